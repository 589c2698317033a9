"""A missed webhook found again through the gateway: a merchant's webhook endpoint is down when its payment
succeeds; the merchant finds the event with `GET /v1/events` (signed API key, through the gateway), then
points the endpoint at a working URL and resends the delivery, which arrives signed with the endpoint's secret.

Real gateway, real cashier (worker loops on), the Alipay sandbox and local receivers over real HTTP; one set
of processes for the module's single test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from juhe_sdk import APIError

from gateway.tests.integration.conftest import Stack
from gateway.tests.integration.with_cashier import (
    AlipaySandbox,
    alipay,
    open_alipay_channel,
    paid_alipay_qr,
    stack_with_cashier,
)
from libs.common.db import asyncpg_dsn
from services.cashier.domain.webhooks import SIGNATURE_HEADER, verify_signature
from services.cashier.tests.integration.flows.conftest import WebhookReceiver, serving_receivers, wait_for

DOWN_FOR_EVER = 10**6  # the endpoint answers 500 to every try
__all__ = ["alipay", "stack_with_cashier"]  # fixtures used here


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, ...]]:
    with serving_receivers(DOWN_FOR_EVER, 0) as pair:
        yield pair


async def test_a_missed_webhook_is_found_via_events_and_resent(
    stack_with_cashier: Stack,
    alipay: AlipaySandbox,
    receivers: tuple[WebhookReceiver, ...],
) -> None:
    down, working = receivers
    stack = stack_with_cashier
    created = await stack.new_merchant("Missed Webhook Books")
    merchant_id = created["merchant_id"]
    await open_alipay_channel(stack, merchant_id, alipay)
    juhe = stack.merchant(key_id=created["api_key"]["key_id"], secret=created["api_key"]["secret"])

    # Created with an Idempotency-Key: the gateway keeps the answer (with the endpoint's signing secret) to replay
    # it, sealed: the stored row holds no secret, the replay gives the same one (docs/api-conventions.md).
    hook = {"url": down.url, "enabled_events": ["payment.succeeded"]}
    first = await juhe.request_raw("POST", "/v1/webhook-endpoints", json=hook, idempotency_key="hook-1")
    replay = await juhe.request_raw("POST", "/v1/webhook-endpoints", json=hook, idempotency_key="hook-1")
    endpoint = first.data
    assert replay.replayed and replay.data == endpoint and endpoint["secret"].startswith("whsec_")
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        stored = await conn.fetchrow("SELECT * FROM idempotency_records WHERE key = 'hook-1'")
    finally:
        await conn.close()
    assert stored is not None and stored["response_sealed"]
    assert endpoint["secret"].encode() not in b"".join(str(v).encode() for v in stored.values())
    assert endpoint["secret"].encode() not in stored["response_body"]
    listed = await juhe.request("GET", "/v1/webhook-endpoints")
    assert [e["id"] for e in listed["data"]] == [endpoint["id"]] and listed["has_more"] is False

    payment = await paid_alipay_qr(juhe, alipay, "Books")

    async def failing_delivery() -> dict[str, Any] | None:
        log = await juhe.request("GET", f"/v1/payments/{payment['id']}/webhook-deliveries")
        tried = [d for d in log["data"] if d["url"] == down.url and d["attempt_count"] >= 1]
        return tried[0] if tried else None

    missed = await wait_for(failing_delivery, "a failed try at the down endpoint")
    assert missed["status"] in ("pending", "abandoned") and down.delivered() == []

    # The merchant catches up from the event log: the event is there, whole, though never acknowledged.
    events = await juhe.request("GET", "/v1/events", params={"type": "payment.succeeded"})
    assert events["has_more"] is False and events["next_cursor"] is None
    [event] = events["data"]
    assert (event["id"], event["type"], event["data"]["id"]) == (missed["event_id"], "payment.succeeded", payment["id"])
    assert [e async for e in juhe.events.list(page_size=1)] == [event]  # the SDK pages the same list
    with pytest.raises(APIError) as bad_cursor:
        await juhe.request("GET", "/v1/events", params={"cursor": "not-a-cursor"})
    assert (bad_cursor.value.status, bad_cursor.value.code) == (422, "validation_failed")

    # Fixed endpoint URL, then a resend: the same event arrives, signed with the endpoint's secret.
    changed = await juhe.webhook_endpoints.update(endpoint["id"], url=working.url)
    assert changed["url"] == working.url and "secret" not in {k for k, v in changed.items() if v}
    await juhe.webhook_deliveries.resend(missed["id"])
    [hook] = await wait_for(working.delivered, "the resent webhook")
    assert hook.headers["Juhe-Event-Id"] == event["id"] and hook.headers["Juhe-Delivery-Id"] == missed["id"]
    assert verify_signature(endpoint["secret"], hook.headers[SIGNATURE_HEADER], hook.body, now=int(time.time()))
