"""The spending order of a wallet's top-up bonus lots (docs/ledger.md §3.11), shared by the two places that spend
a bonus: the ledger's own balance payments and the cashier's wallet connector (which builds the hold's postings
itself). One rule, so a payment takes the same lots whichever way it is paid.

A lot is one granted bonus (a 9106 memo account beside the 2308 pool): spending takes the earliest-expiring live
lot first (a bonus without expiry last, then the oldest grant: account ids are time-sortable), then the pool's
unlotted rest (bonuses granted before lots existed). A lot whose bonus was revoked or expired (`ended`) or that
is closed is not the holder's to spend, and what is left in it does not count as unlotted either."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

Lot = Mapping[Any, Any]  # id, status, available (minor units), metadata {payment_id, expires_at, ended?}


def is_live(lot: Lot) -> bool:
    """Spendable, and a refund may give back to it: open and its bonus neither revoked nor expired."""
    return lot["status"] == "active" and not (lot.get("metadata") or {}).get("ended")


def spending_order(lots: Sequence[Lot]) -> list[Lot]:
    """Earliest expiry first, no expiry last, then the oldest grant (closed lots left out)."""

    def key(lot: Lot) -> tuple[bool, datetime | str, str]:
        expires = (lot.get("metadata") or {}).get("expires_at")
        return (expires is None, datetime.fromisoformat(expires) if expires else "", str(lot["id"]))

    return sorted((lot for lot in lots if lot["status"] != "closed"), key=key)


def spend_plan(lots: Sequence[Lot], pool_available_minor: int, amount_minor: int) -> list[tuple[str, int]] | None:
    """What a bonus part of `amount_minor` takes from each live lot, in the spending order, then from the pool's
    unlotted rest (returned as the shortfall the lots did not cover: the pool debit covers it, no lot does);
    None when the live lots and the unlotted rest together fall short (the payment is then refused whole)."""
    ordered = spending_order(lots)
    plan: list[tuple[str, int]] = []
    rest = amount_minor
    for lot in ordered:
        take = min(rest, max(int(lot["available"]), 0)) if is_live(lot) else 0
        if take:
            plan.append((str(lot["id"]), take))
            rest -= take
    unlotted = pool_available_minor - sum(max(int(lot["available"]), 0) for lot in ordered)
    return plan if rest <= max(unlotted, 0) else None
