"""Split arithmetic: shares always add up to the amount; refunds give back every fen exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.errors import Problem
from services.settlement.domain.splits import (
    PAYEE,
    Share,
    SplitRule,
    allocate,
    allocate_explicit,
    platform_fee_minor,
    proportional,
    reversal,
    validate_explicit,
    validate_rule,
)

RECEIVERS = [f"r{i}" for i in range(6)]


@st.composite
def rules(draw: st.DrawFn) -> SplitRule:
    ids = draw(st.lists(st.sampled_from(RECEIVERS), min_size=0, max_size=5, unique=True))
    shares = []
    budget = 10_000
    for rid in ids:
        if draw(st.booleans()) and budget > 0:
            bps = draw(st.integers(1, budget))
            budget -= bps
            shares.append(Share(rid, percent_bps=bps))
        else:
            shares.append(Share(rid, fixed_minor=draw(st.integers(1, 10**9))))
    return SplitRule(tuple(shares), draw(st.sampled_from(RECEIVERS)))


@settings(max_examples=400, deadline=None)
@given(amount=st.integers(0, 2**62), rule=rules())
def test_shares_always_sum_to_the_amount(amount: int, rule: SplitRule) -> None:
    validate_rule(rule, RECEIVERS)
    shares = allocate(amount, rule)
    assert sum(shares.values()) == amount
    assert all(v >= 0 for v in shares.values())
    assert set(shares) <= {s.receiver_id for s in rule.shares} | {rule.remainder_receiver_id}


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(1, 10**9),
    rule=rules(),
    cuts=st.lists(st.integers(1, 10**9), min_size=1, max_size=6),
)
def test_partial_refunds_reverse_exactly_the_split(amount: int, rule: SplitRule, cuts: list[int]) -> None:
    original = allocate(amount, rule)
    steps = sorted({min(c, amount) for c in cuts} | {amount})
    given_back: dict[str, int] = {}
    before = 0
    for after in steps:
        back = reversal(original, rule.remainder_receiver_id, before, after)
        assert sum(back.values()) == after - before
        for r, v in back.items():
            given_back[r] = given_back.get(r, 0) + v
        before = after
    assert {r: v for r, v in given_back.items() if v} == {r: v for r, v in original.items() if v}


def test_example_teacher_platform_school() -> None:
    rule = SplitRule((Share("teacher", percent_bps=3000), Share("platform", fixed_minor=100)), "school")
    assert allocate(10_001, rule) == {"teacher": 3000, "platform": 100, "school": 6901}
    assert proportional({"teacher": 3000, "school": 7000}, "school", 5000) == {"teacher": 1500, "school": 3500}


def test_fixed_shares_never_exceed_the_amount() -> None:
    rule = SplitRule((Share("a", fixed_minor=500), Share("b", percent_bps=5000)), "c")
    assert allocate(300, rule) == {"a": 300, "c": 0}


def test_platform_fee_rounds_half_up() -> None:
    assert platform_fee_minor(10_000, 60) == 60
    assert platform_fee_minor(8_888, 60) == 53  # 53.328
    assert platform_fee_minor(25, 2000) == 5
    assert platform_fee_minor(75, 100) == 1  # 0.75 → 1


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        (SplitRule((Share("r0", percent_bps=6000), Share("r1", percent_bps=4001)), "r2"), "shares_exceed_total"),
        (SplitRule((Share("nobody", percent_bps=100),), "r2"), "unknown_receiver"),
        (SplitRule((Share("r0", percent_bps=100),), "nobody"), "unknown_receiver"),
        (SplitRule((Share("r0", percent_bps=100, fixed_minor=1),), "r1"), "invalid_share"),
        (SplitRule((Share("r0"),), "r1"), "invalid_share"),
        (SplitRule((Share("r0", fixed_minor=0),), "r1"), "invalid_share"),
        (SplitRule((Share("r0", fixed_minor=5), Share("r0", percent_bps=5)), "r1"), "duplicate_receiver"),
    ],
)
def test_bad_rules_are_refused(rule: SplitRule, code: str) -> None:
    with pytest.raises(Problem) as caught:
        validate_rule(rule, RECEIVERS)
    assert caught.value.spec.code == code


EXPLICIT_RULE = SplitRule((Share("t", percent_bps=3000), Share("a", fixed_minor=500)), "shop")


@pytest.mark.parametrize(
    ("split", "code"),
    [
        ([("x", 1)], "unknown_receiver"),
        ([("t", 2971)], "share_exceeds_rule"),
        ([("a", 501)], "share_exceeds_rule"),
        ([("shop", 9901)], "shares_exceed_total"),
        ([("t", 1), ("t", 1)], "duplicate_receiver"),
        ([("t", 0)], "invalid_share"),
        ([], "invalid_share"),
    ],
)
def test_explicit_split_refusals(split: list[tuple[str, int]], code: str) -> None:
    with pytest.raises(Problem) as caught:
        validate_explicit(split, EXPLICIT_RULE, 9900)
    assert caught.value.spec.code == code


def test_explicit_split_within_the_rule() -> None:
    validate_explicit([("t", 2970), ("a", 500), ("shop", 6430)], EXPLICIT_RULE, 9900)
    assert allocate_explicit(9900, [("t", 2970), ("a", 500)]) == {"t": 2970, "a": 500, PAYEE: 6430}


@given(st.integers(0, 10**9), st.lists(st.integers(1, 10**8), min_size=1, max_size=20))
def test_explicit_allocation_always_sums_to_the_base(base: int, amounts: list[int]) -> None:
    result = allocate_explicit(base, [(f"r{i}", a) for i, a in enumerate(amounts)])
    assert sum(result.values()) == base and all(v >= 0 for v in result.values())
    assert all(result.get(f"r{i}", 0) <= a for i, a in enumerate(amounts))
