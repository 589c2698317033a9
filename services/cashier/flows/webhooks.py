"""Merchant webhooks: queued in the same transaction as the state change, delivered by the worker.

Queueing inside the transition's transaction is what makes "one transition, one webhook": the CAS
that loses writes nothing, the one that wins writes the event, the outbox row and the delivery
together. Delivery is at least once (a 2xx is the only acknowledgement), in order per payment (the
worker only sends the oldest pending delivery of a payment to each target), and survives restarts (it is a
table). Each event also goes to every enabled webhook endpoint subscribed to its type (one delivery per
endpoint, same retry schedule) and into the merchant event log behind `GET /v1/events`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.encoders import jsonable_encoder

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.ids import new_id
from libs.common.logging import get_logger
from libs.common.sealing import Sealer
from services.cashier.domain.records import PaymentRecord
from services.cashier.domain.webhook_endpoints import subscribes_to
from services.cashier.domain.webhooks import SIGNATURE_HEADER, retry_delay_seconds, signature_header
from services.cashier.flows.context import Cashier
from services.cashier.flows.merchants import merchant_webhook_secret
from services.cashier.flows.webhook_endpoints import endpoint_secrets
from services.cashier.flows.webhook_targets import TargetRefused
from services.cashier.store.webhook_endpoints import DeliveryTarget, delivery_targets
from services.cashier.store.webhooks import (
    ClaimedDelivery,
    claim_due_deliveries,
    insert_event_with_deliveries,
    record_attempt,
)

log = get_logger("juhe.cashier.webhooks")

USER_AGENT = "Juhe-Webhooks/1.0"
ERROR_TEXT_MAX_CHARS = 500


async def enqueue_webhook(
    tx: Tx,
    cashier: Cashier,
    *,
    payment: PaymentRecord,
    envelope: Envelope,
    data: dict[str, Any],
    targets: Sequence[DeliveryTarget] | None = None,
) -> None:
    """Record the merchant event of a final state and queue its deliveries (`webhook_rows`). Two statements whatever
    the number of targets: the targets read (none when the caller read `targets` with the payment in `tx`), then the
    event with its deliveries (docs/performance.md, fifth pass)."""
    if targets is None:  # not read with the payment in this transaction (store/notifications.py): read them now
        targets = await delivery_targets(
            tx.conn, payment.merchant_id, livemode=payment.livemode, notify_url=payment.notify_url
        )
    event, deliveries = webhook_rows(cashier, payment=payment, envelope=envelope, data=data, targets=targets)
    # The events this transaction published so far (the `payment.*` this webhook announces among them) are written by
    # the same statement: one round trip fewer before COMMIT (store/webhooks.py, docs/performance.md "Sixth pass").
    await insert_event_with_deliveries(tx.conn, event, deliveries, outbox_rows=tx.take_outbox_rows())


def webhook_rows(
    cashier: Cashier,
    *,
    payment: PaymentRecord,
    envelope: Envelope,
    data: dict[str, Any],
    targets: Sequence[DeliveryTarget],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The merchant event of a final state and its deliveries, as rows to write with the change they announce: one
    delivery to the payment's notify_url (else the merchant's default URL), signed with the merchant's secret, and one
    to every enabled webhook endpoint of the payment's mode subscribed to its type, signed with that endpoint's
    secret(s). The event is recorded even when nothing is sent, so `GET /v1/events` can always return it."""
    payload = {
        "id": envelope.id,
        "type": envelope.type,
        "created_at": envelope.time,
        "livemode": payment.livemode,
        "data": jsonable_encoder(data),
    }
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    now = cashier.clock()
    deliveries = [
        {
            "id": new_id("whd"),
            "merchant_id": payment.merchant_id,
            "payment_id": payment.id,
            "event_id": envelope.id,
            "event_type": envelope.type,
            "url": target.url,
            "endpoint_id": target.endpoint_id,
            "body": body,
            "next_attempt_at": now,
        }
        for target in targets
        if target.endpoint_id is None or subscribes_to(target.enabled_events, envelope.type)
    ]
    event = {
        "id": envelope.id,
        "merchant_id": payment.merchant_id,
        "type": envelope.type,
        "payment_id": payment.id,
        "livemode": payment.livemode,
        "payload": json.loads(body),
        "created_at": datetime.fromisoformat(envelope.time),
    }
    return event, deliveries


@dataclass(frozen=True)
class _Target:
    """Where a claimed delivery goes and the secrets that sign it (None: its endpoint was deleted)."""

    url: str
    secrets: tuple[str, ...] | None


def _target(sealer: Sealer, delivery: ClaimedDelivery, merchant_secrets: dict[str, str], now: datetime) -> _Target:
    """From what the claim read with the delivery (store/webhooks.py); each merchant's secret opened once a batch."""
    if delivery.endpoint_id is None:
        secret = merchant_secrets.get(delivery.merchant_id)
        if secret is None:
            sealed = delivery.webhook_secret_sealed is not None
            secret = merchant_secrets[delivery.merchant_id] = (
                merchant_webhook_secret(sealer, delivery) if sealed else ""
            )
        return _Target(delivery.url, (secret,))
    endpoint = delivery.endpoint
    if endpoint is None:
        return _Target(delivery.url, None)
    # The endpoint's URL now: a merchant who corrects a wrong URL gets the retries there.
    return _Target(endpoint.url, endpoint_secrets(sealer, endpoint, now=now))


async def deliver_due(cashier: Cashier) -> int:
    """Send one batch of due deliveries; returns how many were tried."""
    s = cashier.settings
    now = cashier.clock()
    lease_until = now + timedelta(seconds=s.webhook_timeout_seconds + 5)
    # No BEGIN/COMMIT: the claim is one statement (atomic by itself, its lease written with its row locks), which
    # also reads each delivery's merchant secret and endpoint (store/webhooks.py), on an autocommit connection.
    async with cashier.uow.autocommit() as conn:
        due = await claim_due_deliveries(conn, now=now, lease_until=lease_until, limit=s.webhook_batch_max)
    if not due:
        return 0
    limit = asyncio.Semaphore(s.webhook_concurrency_max)
    merchant_secrets: dict[str, str] = {}

    async def one(delivery: ClaimedDelivery) -> None:
        async with limit:
            await _deliver(cashier, delivery, _target(cashier.sealer, delivery, merchant_secrets, now))

    await asyncio.gather(*(one(d) for d in due))
    return len(due)


async def _deliver(cashier: Cashier, delivery: ClaimedDelivery, target: _Target) -> None:
    body = delivery.body.encode("utf-8")
    timestamp = int(cashier.clock().timestamp())
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    final = False
    try:
        if target.secrets is None:  # deleted while this delivery was claimed: nothing to send it to any more
            raise _EndpointGone(delivery.endpoint_id)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(target.secrets[0], timestamp, body, also=target.secrets[1:]),
            "Juhe-Event-Id": delivery.event_id,
            "Juhe-Event-Type": delivery.event_type,
            "Juhe-Delivery-Id": delivery.id,
        }
        status_code = await _post(cashier, target.url, body, headers)
        if status_code // 100 != 2:
            # A redirect is not followed (it could point inside): it is a failed try like any non-2xx.
            error = f"HTTP {status_code}"
    except _EndpointGone:
        error, final = "endpoint deleted", True
    except TargetRefused as exc:  # an internal or non-https target: refusing it again later changes nothing
        error, final = f"target_not_allowed: {exc}"[:ERROR_TEXT_MAX_CHARS], True
    except Exception as exc:  # any other failure to deliver is retried; the log keeps why
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX_CHARS]
    duration_ms = int((time.perf_counter() - started) * 1000)
    delivered = error is None
    attempt_no = delivery.attempt_count + 1
    next_at = None
    if not delivered and not final:
        delay = retry_delay_seconds(
            attempt_no,
            schedule_seconds=tuple(cashier.settings.webhook_retry_schedule_seconds),
            scale=cashier.settings.webhook_retry_scale,
        )
        next_at = cashier.clock() + timedelta(seconds=delay) if delay is not None else None
    async with cashier.uow.autocommit() as conn:  # one statement: atomic without BEGIN/COMMIT (store/webhooks.py)
        await record_attempt(
            conn,
            delivery.id,
            attempt_no=attempt_no,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            delivered=delivered,
            next_attempt_at=next_at,
        )
    if not delivered:
        log.info("webhook not acknowledged", delivery_id=delivery.id, attempt=attempt_no, error=error)


class _EndpointGone(Exception):
    """The delivery's webhook endpoint no longer exists."""


async def _post(cashier: Cashier, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST through the pinned client (flows/webhook_targets.py: checked, pinned, no redirect, at most
    `webhook_response_max_bytes` of the answer read: only its status matters); the whole exchange (resolve, connect,
    send, read) is time-bounded."""
    async with asyncio.timeout(cashier.settings.webhook_timeout_seconds):
        return await cashier.webhook_http.post_webhook(
            url, body, headers, read_bytes_max=cashier.settings.webhook_response_max_bytes
        )


async def run_delivery_loop(cashier: Cashier) -> None:
    while True:
        tried = await deliver_due(cashier)
        if tried < cashier.settings.webhook_batch_max:
            await asyncio.sleep(cashier.settings.webhook_interval_seconds)
