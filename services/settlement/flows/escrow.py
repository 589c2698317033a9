"""Escrow (担保交易) confirmation: the platform confirms fulfilment, or the deadline passes; the held split
is posted exactly once.

The one decision is a compare-and-set `held → confirming` in settlement's database, in the same
transaction as the settlement entries the split creates; posting the ledger hold afterwards is
idempotent (posting a posted hold again is a harmless replay). So a confirm that arrives twice, or
together with the auto-confirm deadline, splits once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from libs.common.db import UnitOfWork
from libs.common.errors import CONFLICT, Problem
from libs.common.logging import get_logger
from services.settlement.clients.ledger import LedgerClient
from services.settlement.config import Settings
from services.settlement.domain.errors import SPLIT_NOT_FOUND
from services.settlement.flows.entries import bill_day, split_entries_on_confirm
from services.settlement.flows.splits import process_split
from services.settlement.store import records
from services.settlement.store.tables import payment_records

log = get_logger("juhe.settlement.escrow")


async def confirm(
    uow: UnitOfWork, ledger: LedgerClient, settings: Settings, payment_id: str, *, by: str
) -> dict[str, Any]:
    """Confirm the payment's held split; returns the split. A repeat (or a lost race) returns it unchanged."""
    async with uow.read() as conn:
        split = await records.split_of_payment(conn, payment_id)
    if split is None or split["mode"] != "escrow":
        raise Problem(SPLIT_NOT_FOUND, f"payment {payment_id} has no escrow split")
    if split["status"] == "pending":  # the hold is not in the ledger yet: make it now
        await process_split(uow, ledger, settings, split)
    async with uow.begin() as tx:
        split = await records.get_split(tx.conn, split["split_id"])
        assert split is not None
        if split["status"] == "pending":
            raise Problem(CONFLICT, "the escrow hold is not in the ledger yet; retry")
        now = datetime.now(UTC)
        won = await records.move_split(
            tx.conn, split["split_id"], ("held",), "confirming", confirmed_at=now, confirmed_by=by
        )
        if won:
            payment = (
                (await tx.conn.execute(payment_records.select().where(payment_records.c.payment_id == payment_id)))
                .mappings()
                .one()
            )
            due = max(payment["settle_date"] or bill_day(now), bill_day(now))
            await split_entries_on_confirm(tx, split, payment, due)
    current = await _split(uow, split["split_id"])
    if current["status"] == "confirming":
        await process_split(uow, ledger, settings, current)
    return await _split(uow, split["split_id"])


async def _split(uow: UnitOfWork, split_id: str) -> dict[str, Any]:
    async with uow.read() as conn:
        row = await records.get_split(conn, split_id)
    assert row is not None
    return dict(row)


async def auto_confirm_due(uow: UnitOfWork, ledger: LedgerClient, settings: Settings) -> int:
    """Confirm every held split whose deadline has passed; returns how many were looked at."""
    async with uow.read() as conn:
        payment_ids = await records.due_escrow_confirmations(conn, datetime.now(UTC), settings.split_batch_max)
    for payment_id in payment_ids:
        try:
            await confirm(uow, ledger, settings, payment_id, by="auto_confirm")
        except Problem as exc:
            log.warning("auto-confirm deferred", payment_id=payment_id, error=exc.detail)
    return len(payment_ids)
