"""Points arithmetic: rate and caps, and proportional reversal that sums exactly to the grant."""

from __future__ import annotations

import functools

import pytest

from services.marketing.domain import points


def test_points_per_whole_unit_with_caps() -> None:
    assert points.points_for(12_399, unit_minor=100, points_per_unit=1, payment_points_max=None) == 123
    assert points.points_for(12_399, unit_minor=100, points_per_unit=3, payment_points_max=200) == 200
    assert points.within_daily_cap(100, earned_today=650, user_daily_points_max=700) == 50
    assert points.within_daily_cap(100, earned_today=750, user_daily_points_max=700) == 0
    assert points.within_daily_cap(100, earned_today=10**9, user_daily_points_max=None) == 100


def test_reversal_is_proportional_and_complete_at_full_refund() -> None:
    assert points.reversed_after(123, amount_minor=12_345, refunded_minor=4_000) == 39
    assert points.reversed_after(123, amount_minor=12_345, refunded_minor=12_345) == 123
    assert points.reversed_after(123, amount_minor=12_345, refunded_minor=99_999) == 123


def test_a_lot_keeps_what_refunds_exchanges_and_expiry_left_never_below_zero() -> None:
    assert points.remaining(500, reversed_points=100, consumed_points=150, expired_points=0) == 250
    assert points.remaining(500, reversed_points=400, consumed_points=300, expired_points=0) == 0


def test_exchanges_take_the_first_to_expire_lots_first() -> None:
    lots = [("pay_old", 300), ("pay_mid", 0), ("pay_new", 500)]
    assert points.consume_fifo(lots, 450) == [("pay_old", 300), ("pay_new", 150)]
    assert points.consume_fifo(lots, 300) == [("pay_old", 300)]
    with pytest.raises(ValueError):
        points.consume_fifo(lots, 801)


def test_a_refund_and_the_expiry_of_its_lot_take_the_same_points_in_either_order() -> None:
    """Lot of 300, 100 exchanged. Refund first: it takes the 200 left, the expiry nothing. Expiry first: it
    takes the 200 left, the refund nothing. A partial refund after the expiry takes nothing either."""
    before = points.reversal_taken(300, reversed_before=0, reversed_after=300, consumed_points=100, expired_points=0)
    expiry_after = points.remaining(300, reversed_points=300, consumed_points=100, expired_points=0)
    assert (before, expiry_after) == (200, 0)
    expiry_first = points.remaining(300, reversed_points=0, consumed_points=100, expired_points=0)
    after = points.reversal_taken(
        300, reversed_before=0, reversed_after=300, consumed_points=100, expired_points=expiry_first
    )
    assert (expiry_first, after) == (200, 0) and before + expiry_after == expiry_first + after
    taken = functools.partial(points.reversal_taken, 300, consumed_points=0)
    assert taken(reversed_before=0, reversed_after=150, expired_points=300) == 0
    assert taken(reversed_before=50, reversed_after=150, expired_points=0) == 100


def test_refunds_around_an_exchange_take_no_more_than_the_lot_granted() -> None:
    """Half refunded (150), then 100 exchanged, then the rest refunded: the second reversal takes the 50 left,
    so 150 + 100 + 50 = the lot's 300. Exchanged first, the whole refund takes the 200 left: 100 + 200."""
    first = points.reversal_taken(300, reversed_before=0, reversed_after=150, consumed_points=0, expired_points=0)
    rest = points.reversal_taken(300, reversed_before=150, reversed_after=300, consumed_points=100, expired_points=0)
    assert (first, rest) == (150, 50) and first + 100 + rest == 300
    whole = points.reversal_taken(300, reversed_before=0, reversed_after=300, consumed_points=100, expired_points=0)
    assert 100 + whole == 300
