"""Suspending and resuming a merchant: takes effect on every gateway replica with the very next request.

Nothing is cached: the per-request guard statement (`store/guards.py: admit`) reads `merchants.suspended_at`
for the merchant a refusable request acts for, in the statement it runs anyway (one more primary-key lookup,
no extra round trip), so there is no window in which another replica still admits the merchant. What stays
allowed while suspended (reads, refunds, closing) is `domain/suspension.py`. Each change is audited
(`merchant_status_changes`: who, when, why) in the same transaction as the change itself.
"""

from __future__ import annotations

from typing import Any

from gateway.domain.access import Principal
from gateway.domain.errors import MERCHANT_NOT_FOUND, MERCHANT_STATUS_CONFLICT
from gateway.domain.onboarding import actor_of
from gateway.flows.identities import Identities
from gateway.store import onboarding as store
from libs.common.errors import Problem
from libs.common.ids import new_id

STATUS_CHANGES_MAX = 50


def _view(row: Any) -> dict[str, Any]:
    return {
        "merchant_id": row["merchant_id"],
        "name": row["name"],
        "status": row["status"],
        "suspended": row["suspended_at"] is not None,
        "suspended_at": row["suspended_at"],
        "suspension_reason": row["suspension_reason"],
    }


async def change(
    identities: Identities, platform: Principal, merchant_id: str, *, suspend: bool, reason: str
) -> dict[str, Any]:
    """Suspend (or resume) with a reason; 409 `merchant_status_conflict` if it already is (or is not)."""
    async with identities.uow.begin() as tx:
        row = await store.merchant_state(tx.conn, merchant_id, platform_id=platform.platform_id, lock=True)
        if row is None:
            raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
        if (row["suspended_at"] is not None) == suspend:
            state = "suspended" if suspend else "not suspended"
            raise Problem(MERCHANT_STATUS_CONFLICT, f"merchant {merchant_id} is already {state}")
        updated = await store.set_suspension(
            tx.conn, merchant_id, suspended=suspend, reason=reason if suspend else None
        )
        await store.record_status_change(
            tx.conn,
            change_id=new_id("msc"),
            merchant_id=merchant_id,
            platform_id=platform.platform_id,
            action="suspended" if suspend else "resumed",
            reason=reason,
            actor=actor_of(platform),
        )
    return _view(updated)


async def read(identities: Identities, platform: Principal, merchant_id: str) -> dict[str, Any]:
    async with identities.uow.read() as conn:
        row = await store.merchant_state(conn, merchant_id, platform_id=platform.platform_id)
        changes = await store.status_changes(conn, merchant_id, limit=STATUS_CHANGES_MAX) if row is not None else []
    if row is None:
        raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} does not exist")
    return {**_view(row), "changes": [dict(c) for c in changes]}
