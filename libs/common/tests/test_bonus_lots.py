"""The spending order of top-up bonus lots (libs/common/bonus_lots.py, docs/ledger.md §3.11): earliest expiry
first, no expiry last, ended or closed lots never spent, the pool's unlotted rest last, short → None."""

from __future__ import annotations

from typing import Any

from libs.common.bonus_lots import spend_plan


def lot(lot_id: str, available: int, expires_at: str | None, **extra: Any) -> dict[str, Any]:
    meta = {"payment_id": f"pay_{lot_id}", "expires_at": expires_at, **extra}
    return {"id": lot_id, "status": "active", "available": available, "metadata": meta}


def test_earliest_expiry_first_then_no_expiry_then_the_unlotted_rest() -> None:
    lots = [
        lot("acc_a", 300, None),
        lot("acc_b", 200, "2027-03-01T00:00:00+00:00"),
        lot("acc_c", 100, "2027-01-01T00:00:00+08:00"),
    ]
    assert spend_plan(lots, 650, 250) == [("acc_c", 100), ("acc_b", 150)]
    assert spend_plan(lots, 650, 600) == [("acc_c", 100), ("acc_b", 200), ("acc_a", 300)]
    assert spend_plan(lots, 650, 650) == [("acc_c", 100), ("acc_b", 200), ("acc_a", 300)]  # 50 unlotted
    assert spend_plan(lots, 650, 651) is None


def test_an_ended_or_closed_lot_is_neither_spent_nor_counted_as_unlotted() -> None:
    ended = lot("acc_e", 400, "2026-01-01T00:00:00+00:00", ended="bonus_revocation")
    closed = {**lot("acc_x", 0, None), "status": "closed"}
    live = lot("acc_l", 100, None)
    assert spend_plan([ended, closed, live], 500, 100) == [("acc_l", 100)]
    assert spend_plan([ended, closed, live], 500, 101) is None  # the ended lot's 400 is not the holder's
