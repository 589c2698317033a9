"""The reconciliation rules without a database: one pair's outcome, and what a bill line settles to escrow."""

from __future__ import annotations

from services.settlement.domain.reconciliation import Line, Outcome, Record, Resolution, classify, settled_minor


def rec(amount: int = 1000, fee: int | None = 6, status: str = "succeeded", kind: str = "payment") -> Record:
    return Record(kind, "k", "ch", "pay_k", "re_k" if kind == "refund" else None, "o", amount, fee, status)


def line(amount: int = 1000, fee: int = 6, status: str = "SUCCESS", kind: str = "payment") -> Line:
    return Line(kind, "k", "ch", amount, fee, status)


def test_first_disagreement_wins_status_then_amount_then_fee() -> None:
    both = classify(rec(status="failed"), line(amount=1, fee=1))
    assert (both.outcome, both.resolution) == (Outcome.STATUS_MISMATCH, Resolution.CASHIER_REQUERY)
    assert both.detail == "Juhe failed, channel SUCCESS"
    assert classify(rec(), line(amount=999, fee=1)).outcome is Outcome.AMOUNT_MISMATCH
    assert classify(rec(), line(amount=999)).detail == "Juhe 1000, channel 999"
    fee = classify(rec(), line(fee=7))
    assert (fee.outcome, fee.detail) == (Outcome.FEE_MISMATCH, "expected fee 6, channel charged 7")
    assert classify(rec(fee=None), line(fee=7)).outcome is Outcome.MATCHED  # no fee in force: not compared


def test_refunds_compare_no_fee_and_are_never_requeried() -> None:
    assert classify(rec(kind="refund", fee=None), line(kind="refund", fee=-6)).outcome is Outcome.MATCHED
    in_flight = classify(rec(kind="refund", fee=None), line(kind="refund", status="退款中"))
    assert (in_flight.outcome, in_flight.resolution) == (Outcome.STATUS_MISMATCH, Resolution.MANUAL)
    pending = classify(rec(kind="refund", fee=None, status="pending"), line(kind="refund", status="processing"))
    assert pending.outcome is Outcome.MATCHED  # both say not yet


def test_settled_minor_is_amount_less_fee_and_refunds_take_it_back() -> None:
    assert settled_minor(line(amount=10_000, fee=25)) == 9975
    assert settled_minor(line(amount=10_000, fee=-25, kind="refund", status="SUCCESS")) == -9975  # WeChat: fee < 0
    assert settled_minor(line(amount=10_000, fee=25, kind="refund", status="REFUND")) == -9975
    assert settled_minor(line(amount=10_000, fee=25, kind="refund", status="PROCESSING")) == 0
