"""Rate limits: a sliding-window estimate per (key, route class), counted in PostgreSQL so replicas share it.

Requests are counted in fixed windows of `window_seconds` (one row per bucket and window), but a request is
admitted only when the *estimate* of the last `window_seconds` stays within the limit:

    estimate = previous_hits × (share of the previous window still inside the sliding window) + current_hits

so a client that spent its budget at the end of one window cannot spend it again at the start of the next
(the fixed window allowed 2× across a boundary; the estimate allows at most ~1.5× in the worst case and
exactly the limit when requests are spread evenly). Only admitted requests are counted: a client hammering
while limited does not push its own Retry-After further out, so the Retry-After it is told is right.

The check and the increment are one atomic `INSERT … ON CONFLICT DO UPDATE … WHERE` in
`store/guards.py` (the row lock serialises replicas); window boundaries and "now" come from the database
clock, so replicas with a little clock drift agree. This module holds the arithmetic the gateway needs
to explain a refusal (`retry_after_seconds`), with no I/O.
"""

from __future__ import annotations

import math

from gateway.domain.access import RouteClass
from gateway.domain.errors import RATE_LIMITED
from libs.common.errors import Problem


def bucket(key_id: str, route_class: RouteClass) -> str:
    return f"{key_id}:{route_class}"


def estimate(*, previous_hits: int, current_hits: int, elapsed_seconds: float, window_seconds: int) -> float:
    """Requests in the sliding window ending now (previous window weighted by its remaining overlap)."""
    overlap = max(0.0, window_seconds - elapsed_seconds) / window_seconds
    return previous_hits * overlap + current_hits


def retry_after_seconds(
    *, previous_hits: int, current_hits: int, limit: int, elapsed_seconds: float, window_seconds: int
) -> int:
    """Whole seconds after which one more request fits under the limit, if nothing else is admitted meanwhile.

    Within the current window the previous window's weight falls linearly, so the wait solves
    `previous × (W − e − r) / W + current + 1 ≤ limit`. If the current window alone is full, the request
    must wait for the next window, where this window's count becomes the previous one:
    `current × (W − e′) / W + 1 ≤ limit`. Rounded up, at least 1 s.
    """
    w = float(window_seconds)
    e = min(max(elapsed_seconds, 0.0), w)
    if current_hits + 1 <= limit:
        if previous_hits <= 0:
            return 1  # fits now (only reached when refused by a concurrent request in between)
        wait = (w - e) - (limit - current_hits - 1) * w / previous_hits
    else:
        into_next = w - (limit - 1) * w / current_hits if current_hits > 0 else 0.0
        wait = (w - e) + max(0.0, into_next)
    return max(1, math.ceil(wait - 1e-9))


def check(
    *,
    admitted: bool,
    limit: int,
    previous_hits: int,
    current_hits: int,
    window_start: int,
    window_seconds: int,
    now_epoch: float,
) -> None:
    """Raise 429 `rate_limited` with Retry-After when the guard statement did not admit the request."""
    if admitted:
        return
    retry_after = retry_after_seconds(
        previous_hits=previous_hits,
        current_hits=current_hits,
        limit=limit,
        elapsed_seconds=now_epoch - window_start,
        window_seconds=window_seconds,
    )
    raise Problem(
        RATE_LIMITED,
        f"more than {limit} requests in the last {window_seconds} s for this key and route class",
        retry_after_seconds=retry_after,
        limit=limit,
        window_seconds=window_seconds,
    )
