from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.routing.domain.fees import (
    FeeRate,
    compute_fee_minor,
    find_overlap,
    quote,
    rate_in_force,
    round_half_up_div,
)
from services.routing.tests.unit.builders import RATES_FROM, rate

AT = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("amount_minor", "rate_bps", "expected_fee_minor"),
    [
        (10_000, 60, 60),  # 100.00 yuan at 0.6 % = 0.60
        (83, 60, 0),  # 0.498 fen rounds down
        (84, 60, 1),  # 0.504 fen rounds up
        (250, 20, 1),  # exactly 0.5 fen: half-up
        (249, 20, 0),  # 0.498
        (1, 10_000, 1),
        (123_456_789, 38, 469_136),  # 469135.7982
    ],
)
def test_fee_rounds_half_up_on_the_bps_product(amount_minor: int, rate_bps: int, expected_fee_minor: int) -> None:
    assert compute_fee_minor(amount_minor, rate("r", rate_bps)) == expected_fee_minor


def test_fee_is_clamped_to_min_and_max_then_fixed_fee_is_added() -> None:
    capped = rate("unionpay", 50, min_fee_minor=10, max_fee_minor=1_300, fixed_fee_minor=5)
    assert compute_fee_minor(100, capped) == 10 + 5  # 0.5 fen → min 10
    assert compute_fee_minor(100_000, capped) == 500 + 5
    assert compute_fee_minor(10_000_000, capped) == 1_300 + 5  # 50 000 capped at 13 yuan


def test_round_half_up_rejects_negative_numerators() -> None:
    with pytest.raises(ValueError):
        round_half_up_div(-1, 10)


@given(
    amount_minor=st.integers(min_value=0, max_value=10**15),
    rate_bps=st.integers(min_value=0, max_value=10_000),
    min_fee=st.integers(min_value=0, max_value=10_000),
    span=st.one_of(st.none(), st.integers(min_value=0, max_value=1_000_000)),
    fixed=st.integers(min_value=0, max_value=1_000),
)
def test_fee_is_never_negative_and_stays_within_min_max_plus_fixed(
    amount_minor: int, rate_bps: int, min_fee: int, span: int | None, fixed: int
) -> None:
    max_fee = None if span is None else min_fee + span
    r = rate("r", rate_bps, min_fee_minor=min_fee, max_fee_minor=max_fee, fixed_fee_minor=fixed)
    fee = compute_fee_minor(amount_minor, r)
    assert fee >= 0
    assert fee >= min_fee + fixed
    if max_fee is not None:
        assert fee <= max_fee + fixed
    exact_numerator = amount_minor * rate_bps
    proportional = fee - fixed
    if min_fee < proportional < (max_fee if max_fee is not None else proportional + 1):
        # not clamped: within half a fen of the exact product
        assert abs(proportional * 10_000 - exact_numerator) <= 5_000


@given(amount_minor=st.integers(min_value=0, max_value=10**12), rate_bps=st.integers(min_value=0, max_value=10_000))
def test_fee_is_monotonic_in_the_amount(amount_minor: int, rate_bps: int) -> None:
    r = rate("r", rate_bps)
    assert compute_fee_minor(amount_minor, r) <= compute_fee_minor(amount_minor + 1, r)


def test_most_specific_rate_in_force_wins() -> None:
    rates = [
        rate("wx", 38, rate_id="base"),
        rate("wx", 20, rate_id="edu", industry="education"),
        rate("wx", 25, rate_id="negotiated", merchant_id="mch_a"),
        rate("wx", 10, rate_id="negotiated_edu", merchant_id="mch_a", industry="education"),
    ]
    pick = lambda merchant, industry: rate_in_force(  # noqa: E731
        rates, route_id="wx", merchant_id=merchant, industry=industry, at=AT
    )
    assert pick("mch_b", None).rate_id == "base"  # type: ignore[union-attr]
    assert pick("mch_b", "education").rate_id == "edu"  # type: ignore[union-attr]
    assert pick("mch_a", "parking").rate_id == "negotiated"  # type: ignore[union-attr]
    assert pick("mch_a", "education").rate_id == "negotiated_edu"  # type: ignore[union-attr]


def test_rate_validity_period_decides_which_rate_is_used() -> None:
    switch = datetime(2026, 3, 1, tzinfo=UTC)
    old = rate("wx", 38, rate_id="old", valid_until=switch)
    new = rate("wx", 30, rate_id="new", valid_from=switch)
    assert (
        rate_in_force([old, new], route_id="wx", merchant_id="m", industry=None, at=switch - timedelta(seconds=1))
        == old
    )
    assert rate_in_force([old, new], route_id="wx", merchant_id="m", industry=None, at=switch) == new
    assert rate_in_force([old], route_id="wx", merchant_id="m", industry=None, at=switch) is None
    assert rate_in_force([new], route_id="wx", merchant_id="m", industry=None, at=RATES_FROM) is None


def test_overlapping_rates_of_the_same_key_are_found_and_disjoint_ones_are_not() -> None:
    switch = datetime(2026, 3, 1, tzinfo=UTC)
    old = rate("wx", 38, rate_id="old", valid_until=switch)
    assert find_overlap([old], rate("wx", 30, rate_id="new", valid_from=switch)) is None
    assert find_overlap([old], rate("wx", 30, rate_id="new", valid_from=switch - timedelta(days=1))) == old
    assert find_overlap([old], rate("wx", 30, rate_id="edu", industry="education")) is None  # another key
    assert find_overlap([old], old) is None  # itself (an update)


def test_quote_reports_the_rate_used_for_settlement() -> None:
    q = quote(rate("wx", 38, rate_id="fr_x", industry="parking"), 20_000)
    assert (q.rate_id, q.rate_bps, q.fee_minor, q.basis) == ("fr_x", 38, 76, "industry")
    assert "fr_x" in q.describe()


def test_validation_names_every_bad_field() -> None:
    bad = FeeRate(
        rate_id="x",
        route_id="wx",
        rate_bps=10_001,
        valid_from=datetime(2026, 3, 1),  # naive
        min_fee_minor=-1,
        max_fee_minor=-2,
        fixed_fee_minor=-3,
        industry="Bad Industry",
    )
    fields = {e.field for e in bad.validate()}
    assert fields == {"rate_bps", "min_fee_minor", "max_fee_minor", "fixed_fee_minor", "valid_from", "industry"}
    backwards = rate("wx", 30, valid_until=RATES_FROM - timedelta(days=1))
    assert [e.field for e in backwards.validate()] == ["valid_until"]
    assert rate("wx", 30).validate() == []
