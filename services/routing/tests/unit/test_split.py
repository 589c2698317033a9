from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.routing.domain.split import below_ratio, hash64, pick_weighted, unit_interval


def test_a_70_30_split_lands_within_3_percent_on_10000_payment_ids() -> None:
    weights = [("allinpay", 70), ("lianlian", 30)]
    counts = Counter(pick_weighted(weights, f"split:rul_1:pay_{i:06d}") for i in range(10_000))
    assert abs(counts["allinpay"] / 10_000 - 0.70) <= 0.03
    assert abs(counts["lianlian"] / 10_000 - 0.30) <= 0.03


def test_the_same_key_always_gets_the_same_choice() -> None:
    weights = [("a", 1), ("b", 1), ("c", 2)]
    assert [pick_weighted(weights, f"k{i}") for i in range(100)] == [
        pick_weighted(weights, f"k{i}") for i in range(100)
    ]
    # A known vector, so a change of hashing (which would reshuffle live traffic) fails loudly.
    # sha256("split:rul_1:pay_000001") starts 6a7ad9d7917e6cd5 → 0.4159… of the way → 70/30 picks "a".
    assert hash64("split:rul_1:pay_000001") == 0x6A7AD9D7917E6CD5
    assert pick_weighted([("a", 70), ("b", 30)], "split:rul_1:pay_000001") == "a"
    assert pick_weighted([("a", 40), ("b", 60)], "split:rul_1:pay_000001") == "b"
    assert 0 <= unit_interval("anything") < 1


def test_zero_or_missing_weights_choose_nothing() -> None:
    assert pick_weighted([], "k") is None
    assert pick_weighted([("a", 0)], "k") is None
    assert pick_weighted([("a", 0), ("b", 3)], "k") == "b"


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=100), min_size=2, max_size=5),
    salt=st.text(min_size=0, max_size=8),
)
def test_split_shares_follow_the_weights(weights: list[int], salt: str) -> None:
    named = [(f"r{i}", w) for i, w in enumerate(weights)]
    total = sum(weights)
    n = 4_000
    counts = Counter(pick_weighted(named, f"{salt}:{i}") for i in range(n))
    for name, weight in named:
        # 5 standard deviations of a binomial share: fails on a biased hash, not on noise.
        p = weight / total
        assert abs(counts[name] / n - p) <= 5 * (p * (1 - p) / n) ** 0.5 + 1e-9


def test_probe_ratio_selects_about_that_share() -> None:
    selected = sum(below_ratio(f"probe:r:pay_{i}", 0.2) for i in range(10_000))
    assert 1_700 <= selected <= 2_300
    assert not any(below_ratio(f"k{i}", 0.0) for i in range(100))
    assert all(below_ratio(f"k{i}", 1.0) for i in range(100))
