"""Merchant webhook endpoints: create, change, delete, rotate the signing secret; the merchant event log.

Each endpoint has its own secret (returned once, at creation and at each rotation). Rotation keeps the previous
secret signing for an overlap window so the merchant can deploy the new one without losing a delivery.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.ids import new_id
from libs.common.sealing import Sealer
from services.cashier.domain.errors import WEBHOOK_ENDPOINT_LIMIT_REACHED, WEBHOOK_ENDPOINT_NOT_FOUND
from services.cashier.domain.webhook_endpoints import (
    ENDPOINTS_PER_MERCHANT_MAX,
    enabled_events_problem,
    normalized_events,
)
from services.cashier.flows.context import Cashier
from services.cashier.flows.merchants import mint_webhook_secret
from services.cashier.flows.webhook_targets import ensure_allowed_notify_url
from services.cashier.store.webhook_endpoints import (
    count_endpoints,
    delete_endpoint,
    delete_events_before,
    get_endpoint,
    insert_endpoint,
    lock_merchant_endpoints,
    update_endpoint,
)


def endpoint_view(row: Any, *, secret: str | None = None) -> dict[str, Any]:
    """The endpoint as the API shows it; the secret only when it was just minted (create, rotate): the stored one
    is sealed and never shown again."""
    view: dict[str, Any] = {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "enabled_events": list(row.enabled_events),
        "enabled": row.enabled,
        "livemode": row.livemode,
        "previous_secret_expires_at": row.previous_secret_expires_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if secret is not None:
        view["secret"] = secret
    return view


def endpoint_secrets(sealer: Sealer, row: Any, *, now: datetime) -> tuple[str, ...]:
    """The secrets an endpoint's deliveries are signed with now, opened from their seals (both bound to the
    endpoint's id): the current one, and the previous one during a rotation's overlap window."""
    in_force = [sealer.open(row.secret_sealed, row_id=row.id)]
    expires = row.previous_secret_expires_at
    if row.previous_secret_sealed is not None and expires is not None and expires > now:
        in_force.append(sealer.open(row.previous_secret_sealed, row_id=row.id))
    return tuple(in_force)


def _checked_events(enabled_events: list[str]) -> list[str]:
    problem = enabled_events_problem(enabled_events)
    if problem is not None:
        raise Problem(VALIDATION_FAILED, problem, field="enabled_events")
    return normalized_events(enabled_events)


def _not_found(endpoint_id: str) -> Problem:
    return Problem(WEBHOOK_ENDPOINT_NOT_FOUND, f"webhook endpoint {endpoint_id} does not exist")


async def create_endpoint(
    cashier: Cashier,
    merchant_id: str,
    *,
    url: str,
    enabled_events: list[str],
    enabled: bool,
    description: str | None,
    livemode: bool = False,
) -> dict[str, Any]:
    """An endpoint of the caller's mode: it receives that mode's events only (docs/test-mode.md)."""
    ensure_allowed_notify_url(cashier.settings, url, field="url")
    events = _checked_events(enabled_events)
    async with cashier.uow.begin() as tx:
        await lock_merchant_endpoints(tx.conn, merchant_id)
        if await count_endpoints(tx.conn, merchant_id) >= ENDPOINTS_PER_MERCHANT_MAX:
            raise Problem(
                WEBHOOK_ENDPOINT_LIMIT_REACHED,
                f"at most {ENDPOINTS_PER_MERCHANT_MAX} webhook endpoints per merchant",
                limit_max=ENDPOINTS_PER_MERCHANT_MAX,
            )
        endpoint_id, secret = new_id("whe"), mint_webhook_secret()
        row = await insert_endpoint(
            tx.conn,
            {
                "id": endpoint_id,
                "merchant_id": merchant_id,
                "url": url,
                "description": description,
                "enabled_events": events,
                "enabled": enabled,
                "livemode": livemode,
                "secret_sealed": cashier.sealer.seal(secret, row_id=endpoint_id),
            },
        )
    return endpoint_view(row, secret=secret)


async def change_endpoint(
    cashier: Cashier, merchant_id: str, endpoint_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply the fields given (url, enabled_events, enabled, description); events already queued keep going."""
    if "url" in changes:
        if changes["url"] is None:
            raise Problem(VALIDATION_FAILED, "url cannot be removed", field="url")
        ensure_allowed_notify_url(cashier.settings, changes["url"], field="url")
    if "enabled_events" in changes:
        changes["enabled_events"] = _checked_events(changes["enabled_events"] or [])
    if "enabled" in changes and changes["enabled"] is None:
        raise Problem(VALIDATION_FAILED, "enabled must be true or false", field="enabled")
    async with cashier.uow.begin() as tx:
        if changes:
            row = await update_endpoint(tx.conn, merchant_id=merchant_id, endpoint_id=endpoint_id, values=changes)
        else:
            row = await get_endpoint(tx.conn, merchant_id=merchant_id, endpoint_id=endpoint_id)
    if row is None:
        raise _not_found(endpoint_id)
    return endpoint_view(row)


async def read_endpoint(cashier: Cashier, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    async with cashier.uow.read() as conn:
        row = await get_endpoint(conn, merchant_id=merchant_id, endpoint_id=endpoint_id)
    if row is None:
        raise _not_found(endpoint_id)
    return endpoint_view(row)


async def remove_endpoint(cashier: Cashier, merchant_id: str, endpoint_id: str) -> None:
    async with cashier.uow.begin() as tx:
        if not await delete_endpoint(tx.conn, merchant_id=merchant_id, endpoint_id=endpoint_id):
            raise _not_found(endpoint_id)


async def rotate_secret(
    cashier: Cashier, merchant_id: str, endpoint_id: str, *, overlap_seconds: int
) -> dict[str, Any]:
    """A new secret signs from now on; the current one keeps signing too until `now + overlap_seconds` (0 ends
    it at once). A rotation during an overlap drops the oldest secret: at most two sign at any time."""
    now: datetime = cashier.clock()
    secret = mint_webhook_secret()
    async with cashier.uow.begin() as tx:
        current = await get_endpoint(tx.conn, merchant_id=merchant_id, endpoint_id=endpoint_id, for_update=True)
        if current is None:
            raise _not_found(endpoint_id)
        row = await update_endpoint(
            tx.conn,
            merchant_id=merchant_id,
            endpoint_id=endpoint_id,
            values={
                "secret_sealed": cashier.sealer.seal(secret, row_id=endpoint_id),
                # Sealed for the same row: moved as it is, never opened.
                "previous_secret_sealed": current.secret_sealed if overlap_seconds > 0 else None,
                "previous_secret_expires_at": now + timedelta(seconds=overlap_seconds) if overlap_seconds > 0 else None,
            },
        )
    assert row is not None  # locked above, in the same transaction
    return endpoint_view(row, secret=secret)


async def purge_expired_events(cashier: Cashier) -> int:
    """One batch of the merchant event log's retention: events older than `events_retention_days` go (a
    webhook's retries end after about a day, so nothing still being delivered is removed). How many went; the
    worker runs the next batch at once while batches come back full."""
    settings = cashier.settings
    before = cashier.clock() - timedelta(days=settings.events_retention_days)
    async with cashier.uow.begin() as tx:
        return await delete_events_before(tx.conn, before=before, limit=settings.events_purge_batch_max)
