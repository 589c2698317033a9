"""Reconciliation matching: each bill line gets exactly one outcome; unmatched records are leftovers."""

from __future__ import annotations

from services.settlement.domain.reconciliation import Line, Matcher, Outcome, Record, Resolution


def rec(key: str, amount: int = 1000, status: str = "succeeded", fee: int | None = 6, kind: str = "payment") -> Record:
    return Record(
        kind, key, f"ch_{key}", f"pay_{key}", None if kind == "payment" else key, f"order_{key}", amount, fee, status
    )


def line(
    key: str, amount: int = 1000, fee: int = 6, status: str = "SUCCESS", kind: str = "payment", ch: str = ""
) -> Line:
    return Line(kind, key, ch or f"ch_{key}", amount, fee, status)


def test_every_outcome() -> None:
    matcher = Matcher(
        [
            rec("a"),
            rec("b", amount=999),
            rec("c", status="failed"),
            rec("d", fee=5),
            rec("e"),
            rec("f", status="failed"),
            rec("g", kind="refund", fee=None),
        ]
    )
    results = {r.key: r for r in (matcher.match(line(k)) for k in ("a", "b", "c", "d", "x"))}
    results["g"] = matcher.match(line("g", fee=0, kind="refund", status="PROCESSING"))
    assert results["a"].outcome is Outcome.MATCHED
    assert results["b"].outcome is Outcome.AMOUNT_MISMATCH
    assert results["c"].outcome is Outcome.STATUS_MISMATCH
    assert results["c"].resolution is Resolution.CASHIER_REQUERY
    assert results["d"].outcome is Outcome.FEE_MISMATCH
    assert results["x"].outcome is Outcome.MISSING_IN_JUHE
    assert results["g"].outcome is Outcome.STATUS_MISMATCH
    assert results["g"].resolution is Resolution.MANUAL
    left = list(matcher.leftovers())
    assert [(r.key, r.outcome) for r in left] == [("e", Outcome.MISSING_AT_CHANNEL)]  # failed "f" is not missing


def test_match_by_channel_trade_no_when_out_trade_no_differs() -> None:
    matcher = Matcher([rec("a")])
    assert matcher.match(line("other", ch="ch_a")).outcome is Outcome.MATCHED
    assert list(matcher.leftovers()) == []


def test_a_line_is_matched_once() -> None:
    matcher = Matcher([rec("a")])
    assert matcher.match(line("a")).outcome is Outcome.MATCHED
    assert matcher.match(line("a")).outcome is Outcome.MISSING_IN_JUHE
