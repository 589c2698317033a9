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
    """What is left of one earning (a lot): what refunds, exchanges and expiry have not taken. Never below 0
    (a refund after the points were exchanged takes back more than is left: the ledger logs that shortfall)."""
    return max(0, points - reversed_points - consumed_points - expired_points)


def reversal_taken(points: int, *, reversed_before: int, reversed_after: int, consumed_points: int,
                   expired_points: int) -> int:  # fmt: skip
    """The points a rise in a lot's reversed points takes out of the user (what `points.reversed` carries).

    Before the lot's expiry it is the whole rise (after an exchange, more than is left: the ledger logs that
    shortfall). Once the expiry took the rest, the points the expiry and the refunds take out together are the
    same in either order: a refund first takes its points and the expiry what is left, so together they take
    max(reversed, points - consumed); a refund after the expiry takes only what goes beyond that. Without this,
    a refund seen after the expiry took back the expired points a second time, from the user's other lots."""
    if not expired_points:
        return reversed_after - reversed_before
    gone = points - consumed_points  # what the expiry and the reversals before it took out together
    return max(0, reversed_after - max(reversed_before, gone))


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
