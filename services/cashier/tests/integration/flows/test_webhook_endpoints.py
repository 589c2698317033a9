"""Webhook endpoints end to end on one real cashier (HTTP, PostgreSQL, the Alipay sandbox, local receivers):
two endpoints with different event types each receive exactly their events, signed with their own secret;
a rotation signs with both secrets during the overlap and with the new one only after it; resend; the
endpoint API's refusals; and `GET /v1/events` lists every event, including those no URL received."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from libs.common.sealing import Sealer
from services.cashier.config import DEMO_SECRETS_KEY
from services.cashier.domain.webhooks import verify_signature
from services.cashier.flows.webhook_endpoints import purge_expired_events
from services.cashier.store.tables import merchants, webhook_endpoints
from services.cashier.store.webhook_endpoints import insert_event

from .conftest import (
    RunningCashier,
    Sandboxes,
    WebhookReceiver,
    paid_payment,
    qr_payment,
    serving_receivers,
    wait_for,
)


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, ...]]:
    with serving_receivers(0, 0) as pair:
        yield pair


async def _deliveries(cashier: RunningCashier, payment_id: str) -> list[dict[str, Any]]:
    response = await cashier.get(f"/v1/payments/{payment_id}/webhook-deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def _received(receiver: WebhookReceiver, event_id: str, count: int = 1) -> list[Any]:
    async def arrived() -> list[Any] | None:
        got = [r for r in receiver.delivered() if r.headers.get("Juhe-Event-Id") == event_id]
        return got if len(got) >= count else None

    found: list[Any] = await wait_for(arrived, f"{count} deliveries of {event_id}")
    return found


def _verifies(secret: str, received: Any) -> bool:
    return verify_signature(secret, received.headers["Juhe-Signature"], received.body, now=int(time.time()))


async def _event_of(cashier: RunningCashier, payment_id: str, event_type: str) -> dict[str, Any]:
    events = await cashier.get("/v1/events", type=event_type, limit=100)
    assert events.status_code == 200, events.text
    found = [
        e
        for e in events.json()["data"]
        if e["data"].get("id") == payment_id or e["data"].get("payment_id") == payment_id
    ]
    assert len(found) == 1, events.json()
    return dict(found[0])


async def test_endpoints_rotation_resend_and_events(
    start_cashier: Any,
    sandboxes: Sandboxes,
    webhook_receiver: WebhookReceiver,
    receivers: tuple[WebhookReceiver, ...],
) -> None:
    paid_receiver, closed_receiver = receivers
    cashier: RunningCashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)

    # The API's refusals: an internal URL, an unknown event type; nothing is created.
    refused = await cashier.post("/v1/webhook-endpoints", {"url": "https://10.0.0.5/hooks", "enabled_events": ["*"]})
    assert refused.status_code == 422 and refused.json()["code"] == "notify_url_not_allowed", refused.text
    refused = await cashier.post(
        "/v1/webhook-endpoints", {"url": paid_receiver.url, "enabled_events": ["payment.paid"]}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "validation_failed", refused.text
    assert (await cashier.get("/v1/webhook-endpoints")).json()["data"] == []

    created = await cashier.post(
        "/v1/webhook-endpoints", {"url": paid_receiver.url, "enabled_events": ["payment.succeeded"]}
    )
    assert created.status_code == 201, created.text
    paid_endpoint = created.json()
    created = await cashier.post(
        "/v1/webhook-endpoints", {"url": closed_receiver.url, "enabled_events": ["payment.closed", "refund.failed"]}
    )
    assert created.status_code == 201, created.text
    closed_endpoint = created.json()
    assert paid_endpoint["secret"] != closed_endpoint["secret"]
    listed = (await cashier.get("/v1/webhook-endpoints")).json()["data"]
    assert [e["id"] for e in listed] == [paid_endpoint["id"], closed_endpoint["id"]]
    assert all("secret" not in e or e["secret"] is None for e in listed)  # shown only when minted

    # Two endpoints, different types: each gets exactly its events; the merchant notify_url gets both.
    paid = await paid_payment(cashier, sandboxes, "alipay", 100)
    opened = await cashier.post("/v1/payments", qr_payment(preferred_channels=["alipay"]))
    assert opened.status_code == 201, opened.text
    closed = await cashier.post(f"/v1/payments/{opened.json()['id']}/close")
    assert closed.status_code == 200, closed.text
    await cashier.wait_status(opened.json()["id"], "closed")
    paid_event = await _event_of(cashier, paid["id"], "payment.succeeded")
    closed_event = await _event_of(cashier, opened.json()["id"], "payment.closed")

    [got_paid] = await _received(paid_receiver, paid_event["id"])
    [got_closed] = await _received(closed_receiver, closed_event["id"])
    assert _verifies(paid_endpoint["secret"], got_paid) and not _verifies(closed_endpoint["secret"], got_paid)
    assert _verifies(closed_endpoint["secret"], got_closed)
    assert json.loads(got_paid.body) == paid_event  # the event log holds exactly what the webhook carried
    to_paid = await _deliveries(cashier, paid["id"])
    assert sorted(d["url"] for d in to_paid) == sorted([webhook_receiver.url, paid_receiver.url])
    # Each delivery names the endpoint it goes to (null for the merchant's notify_url).
    assert {d["url"]: d["endpoint_id"] for d in to_paid} == {
        webhook_receiver.url: None,
        paid_receiver.url: paid_endpoint["id"],
    }
    assert [d["url"] for d in await _deliveries(cashier, opened.json()["id"])].count(paid_receiver.url) == 0
    assert {r.headers["Juhe-Event-Id"] for r in paid_receiver.delivered()} == {paid_event["id"]}
    assert {r.headers["Juhe-Event-Id"] for r in closed_receiver.delivered()} == {closed_event["id"]}

    # Resend: the same event, same body, again to the same endpoint.
    endpoint_delivery = next(d for d in to_paid if d["url"] == paid_receiver.url)
    assert got_paid.headers["Juhe-Delivery-Id"] == endpoint_delivery["id"]
    resent = await cashier.post(f"/v1/webhook-deliveries/{endpoint_delivery['id']}/resend")
    assert resent.status_code == 202, resent.text
    first, again = await _received(paid_receiver, paid_event["id"], count=2)
    assert again.body == first.body and _verifies(paid_endpoint["secret"], again)

    # Rotation with an overlap: both secrets sign (two v1= entries), either verifies.
    old_secret = paid_endpoint["secret"]
    rotated = await cashier.post(
        f"/v1/webhook-endpoints/{paid_endpoint['id']}/rotate-secret", {"overlap_seconds": 3600}
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret and rotated.json()["previous_secret_expires_at"] is not None
    during = await paid_payment(cashier, sandboxes, "alipay", 101)
    [got] = await _received(paid_receiver, (await _event_of(cashier, during["id"], "payment.succeeded"))["id"])
    assert got.headers["Juhe-Signature"].count("v1=") == 2
    assert _verifies(new_secret, got) and _verifies(old_secret, got)
    # At rest both secrets are sealed (bound to the endpoint), never plain, as is the merchant's webhook secret.
    async with cashier.engine.connect() as conn:
        stored = (
            await conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == paid_endpoint["id"]))
        ).one()
        merchant = (await conn.execute(select(merchants).where(merchants.c.merchant_id == cashier.merchant_id))).one()
    at_rest = b"".join(bytes(v) if isinstance(v, bytes) else str(v).encode() for v in (*stored, *merchant))
    assert [s for s in (new_secret, old_secret, cashier.webhook_secret) if s.encode() in at_rest] == []
    sealer = Sealer(DEMO_SECRETS_KEY)
    assert sealer.open(stored.secret_sealed, row_id=stored.id) == new_secret
    assert sealer.open(stored.previous_secret_sealed, row_id=stored.id) == old_secret

    # After the window (moved into the past here rather than waited for): the new secret only.
    async with cashier.engine.begin() as conn:
        await conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == paid_endpoint["id"])
            .values(previous_secret_expires_at=webhook_endpoints.c.created_at)
        )
    after = await paid_payment(cashier, sandboxes, "alipay", 102)
    [got] = await _received(paid_receiver, (await _event_of(cashier, after["id"], "payment.succeeded"))["id"])
    assert got.headers["Juhe-Signature"].count("v1=") == 1
    assert _verifies(new_secret, got) and not _verifies(old_secret, got)

    # A disabled endpoint gets nothing new; a deleted one is gone.
    disabled = await cashier.client.patch(
        f"/v1/webhook-endpoints/{paid_endpoint['id']}", json={"enabled": False}, headers=cashier.headers()
    )
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False, disabled.text
    quiet = await paid_payment(cashier, sandboxes, "alipay", 103)
    assert [d["url"] for d in await _deliveries(cashier, quiet["id"])] == [webhook_receiver.url]

    # An endpoint's deliveries, newest first, a page at a time (the console's endpoint page); another merchant: 404.
    path = f"/v1/webhook-endpoints/{paid_endpoint['id']}/deliveries"
    first_two = (await cashier.get(path, limit=2)).json()
    assert [d["payment_id"] for d in first_two["data"]] == [after["id"], during["id"]] and first_two["has_more"]
    last = (await cashier.get(path, limit=2, cursor=first_two["next_cursor"])).json()
    assert [d["payment_id"] for d in last["data"]] == [paid["id"]] and not last["has_more"]
    assert {d["endpoint_id"] for d in first_two["data"] + last["data"]} == {paid_endpoint["id"]}
    theirs = await cashier.get(path, merchant_id="mch_someone_else")
    assert theirs.status_code == 404 and theirs.json()["code"] == "webhook_endpoint_not_found", theirs.text
    deleted = await cashier.client.delete(f"/v1/webhook-endpoints/{closed_endpoint['id']}", headers=cashier.headers())
    assert deleted.status_code == 204, deleted.text
    gone = await cashier.get(f"/v1/webhook-endpoints/{closed_endpoint['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "webhook_endpoint_not_found", gone.text

    # GET /v1/events: every event, oldest first, paged; filters; bad cursor / type are 422 problem+json.
    first_page = await cashier.get("/v1/events", limit=2)
    assert first_page.status_code == 200, first_page.text
    page = first_page.json()
    assert page["has_more"] is True and len(page["data"]) == 2 and page["data"][0]["id"] == paid_event["id"]
    rest = (await cashier.get("/v1/events", cursor=page["next_cursor"], limit=100)).json()
    assert rest["has_more"] is False and rest["next_cursor"] is None
    assert len(page["data"]) + len(rest["data"]) == 5  # four payments succeeded, one closed
    assert [e["id"] for e in (await cashier.get("/v1/events", type="payment.closed")).json()["data"]] == [
        closed_event["id"]
    ]
    window = await cashier.get("/v1/events", created_lt=paid_event["created_at"])
    assert window.json()["data"] == []
    one = await cashier.get(f"/v1/events/{closed_event['id']}")
    assert one.status_code == 200 and one.json() == closed_event
    for params in ({"cursor": "garbage"}, {"type": "payment.paid"}):
        bad = await cashier.get("/v1/events", **params)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["code"] == "validation_failed", bad.text
    other = await cashier.get("/v1/events", merchant_id="mch_someone_else")
    assert other.status_code == 200 and other.json()["data"] == []


async def test_the_event_log_keeps_its_retention_days_and_is_purged_in_batches(start_cashier: Any) -> None:
    """Events older than `events_retention_days` go, a batch of `events_purge_batch_max` at a time (the worker
    runs batches back to back while they come back full); younger ones stay listed."""
    cashier = await start_cashier(events_retention_days=2, events_purge_batch_max=2)
    now = cashier.cashier.clock()
    async with cashier.engine.begin() as conn:
        for i, age_days in enumerate((30, 10, 3, 3, 2.5, 1, 0)):
            await insert_event(
                conn,
                {
                    "id": f"evt_retention_{i}",
                    "merchant_id": cashier.merchant_id,
                    "type": "payment.succeeded",
                    "payment_id": f"pay_retention_{i}",
                    "created_at": now - timedelta(days=age_days),
                    "livemode": False,
                    "payload": {
                        "id": f"evt_retention_{i}",
                        "type": "payment.succeeded",
                        "data": {},
                        "livemode": False,
                        "created_at": (now - timedelta(days=age_days)).isoformat(),
                    },
                },
            )
    batches = []
    while (gone := await purge_expired_events(cashier.cashier)) > 0:
        batches.append(gone)
    assert all(n <= 2 for n in batches) and sum(batches) <= 5  # the worker's own rounds may have taken some
    listed = (await cashier.get("/v1/events", limit=100)).json()
    assert [e["id"] for e in listed["data"]] == ["evt_retention_5", "evt_retention_6"]
