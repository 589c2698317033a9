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


def remaining(points: int, *, reversed_points: int, consumed_points: int, expired_points: int) -> int:
    """What is left of one earning (a lot): what refunds, exchanges and expiry have not taken. Never below 0:
    a refund after the points were exchanged accounts for more than is left, and takes only what is left
    (`reversal_taken`)."""
    return max(0, points - reversed_points - consumed_points - expired_points)


def reversal_taken(
    points: int, *, reversed_before: int, reversed_after: int, consumed_points: int, expired_points: int
) -> int:
    """The points a rise in a lot's reversed points takes out of the user (what `points.reversed` carries): the
    rise, but never more than is left of the lot. Why: every instruction of a lot then fits in what the lot
    granted, so the ledger's points sub-account ends where marketing's lots say in any order of the
    instructions. Points already exchanged or expired stay so: a refund after the expiry takes nothing (the
    expiry took the rest), one after an exchange takes what the exchange left — the same total as when the
    refund comes first and the expiry or exchange then finds less left. (Taking more, out of the user's other
    lots, was refused whole by the ledger or not depending on which instruction it posted first.)"""
    left = remaining(
        points, reversed_points=reversed_before, consumed_points=consumed_points, expired_points=expired_points
    )
    return min(reversed_after - reversed_before, left)


def consume_fifo(lots: list[tuple[str, int]], needed: int) -> list[tuple[str, int]]:
    """Take `needed` points from lots given oldest-to-expire first: [(lot, taken)], the earliest lots emptied
    first, so the points a user spends are the ones that would expire soonest. Raises ValueError when the lots
    hold fewer than `needed` (the caller checks first; nothing is taken then)."""
    taken: list[tuple[str, int]] = []
    for lot, left in lots:
        if needed == 0:
            break
        take = min(left, needed)
        if take > 0:
            taken.append((lot, take))
            needed -= take
    if needed:
        raise ValueError("the lots hold fewer points than needed")
    return taken
