"""Points rules: how many points a payment earns and how many a refund takes back. Integers only."""

from __future__ import annotations


def points_for(amount_minor: int, *, unit_minor: int, points_per_unit: int, payment_points_max: int | None) -> int:
    """Whole units of the amount times the rate (e.g. 1 point per full yuan), capped per payment."""
    points = amount_minor // unit_minor * points_per_unit
    return points if payment_points_max is None else min(points, payment_points_max)


def within_daily_cap(points: int, *, earned_today: int, user_daily_points_max: int | None) -> int:
    """What may still be granted today: never beyond the user's daily cap under this rule."""
    if user_daily_points_max is None:
        return points
    return max(0, min(points, user_daily_points_max - earned_today))


def reversed_after(points: int, *, amount_minor: int, refunded_minor: int) -> int:
    """Points a payment's refunds take back in total: proportional to the amount refunded so far (floor),
    so partial refunds in any order and number sum to the whole grant once the payment is fully refunded."""
    return points * min(refunded_minor, amount_minor) // amount_minor
