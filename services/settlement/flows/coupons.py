"""Coupons redeemed in store (核销), from marketing's `marketing.coupons` (events/consumers.py adapts them): the
platform's subsidy owed to the merchant, counted as the ledger posts it (docs/ledger.md §3.14), so settlement's
check against 2201 stays exact.

`coupon.used` of kind `in_store` adds an entry `<rdm>:in_store_subsidy` (+P, the platform's part of the
discount) for the merchant, due on its cycle's settle date; `coupon.redemption_undone` adds
`<rdm>:in_store_undone` (−P). The keys are unique, so a redelivery adds nothing; an undo that arrives first
simply nets with the use when it comes (entries are signed and summed). Online redemptions are counted from
the payment's own `discount` (flows/payments.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.common.db import Tx
from services.settlement.domain.cycles import settle_date
from services.settlement.events import COUPON_EVENTS, COUPON_USED
from services.settlement.flows.entries import settlement_entry
from services.settlement.store import cycles


def _positive(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def record_in_store_coupon(tx: Tx, event_type: str, data: dict[str, Any], event_time: str) -> None:
    """One `coupon.used` / `coupon.redemption_undone` (`data`: marketing's payload, docs/events.md; `event_time`:
    the event's, when a use does not say `used_at`); anything but an in-store redemption is not settlement's."""
    if data.get("kind") != "in_store" or event_type not in COUPON_EVENTS:
        return
    if event_type == COUPON_USED:
        amount, suffix = _positive((data.get("funding") or {}).get("platform_minor")), "in_store_subsidy"
    else:
        amount, suffix = -_positive((data.get("reversed") or {}).get("platform_minor")), "in_store_undone"
    if amount == 0:
        return
    merchant_id, redemption_id = str(data["merchant_id"]), str(data["redemption_id"])
    occurred = datetime.fromisoformat(str((data.get("used_at") if amount > 0 else None) or event_time))
    due = settle_date(occurred, await cycles.cycle_of(tx.conn, merchant_id), await cycles.calendar(tx.conn))
    redemption = {"currency": str(data["currency"]), "payment_id": redemption_id}  # the entry's order is the redemption
    entry = settlement_entry(f"{redemption_id}:{suffix}", merchant_id, redemption, amount, due, "coupon")
    await cycles.add_entries(tx.conn, [entry])
