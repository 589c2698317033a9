"""Settlement entries: what a payment, refund or split adds to each holder's settlement, and the bill day
they count on. Shared by the event consumers (payments, refunds, realtime splits) and the escrow flow
(a held split's entries are made when it is confirmed), so both write the same rows.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from libs.common.db import Tx
from services.settlement.domain.cycles import DEFAULT_TIMEZONE
from services.settlement.store import cycles, records


def bill_day(moment: datetime) -> date:
    """The channel bill a moment belongs to: bills are cut by China time, like trade and settle days."""
    return moment.astimezone(DEFAULT_TIMEZONE).date()


def settlement_entry(
    key: str,
    holder_id: str,
    payment: Any,
    amount_minor: int,
    due: date,
    kind: str,
    refund_id: str | None = None,
) -> dict[str, Any]:
    """One settlement_entries row: `amount_minor` for `holder_id`, due on `due`, keyed by `key` (idempotent), in the
    payment's mode (a test payment's entries are settled only in a test batch)."""
    return {
        "livemode": payment.get("livemode", True),
        "source_key": key,
        "holder_id": holder_id,
        "currency": payment["currency"],
        "amount_minor": amount_minor,
        "due_date": due,
        "kind": kind,
        "payment_id": payment["payment_id"],
        "refund_id": refund_id,
    }


async def split_entries(
    tx: Tx,
    split_id: str,
    payment: Any,
    allocations: dict[str, int],
    sign: int,
    due: date,
    kind: str,
    refund_id: str | None = None,
) -> None:
    """What the split moves between merchant_pending accounts, as settlement entries of each holder."""
    known = await records.receivers_by_id(tx.conn, list(allocations))
    payee = payment["merchant_id"]
    entries, moved = [], 0
    for receiver_id, amount in allocations.items():
        receiver = known.get(receiver_id)
        if receiver is None or receiver["kind"] == "platform" or receiver["holder_id"] == payee:
            if receiver is not None and receiver["kind"] == "platform":
                moved += amount
            continue
        key = f"{split_id}:{receiver_id}"
        entries.append(settlement_entry(key, receiver["holder_id"], payment, sign * amount, due, kind, refund_id))
        moved += amount
    entries.append(settlement_entry(f"{split_id}:payee", payee, payment, -sign * moved, due, kind, refund_id))
    await cycles.add_entries(tx.conn, entries)


async def split_entries_on_confirm(tx: Tx, split: Any, payment: Any, due: date) -> None:
    """An escrow split's moves count for settlement once it is confirmed (called in the confirming CAS tx)."""
    await split_entries(tx, split["split_id"], payment, dict(split["allocations"]), 1, due, "split")
