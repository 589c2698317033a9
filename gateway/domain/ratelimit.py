"""Rate limits: a fixed window per (key, route class), counted in PostgreSQL so replicas share it.

The window boundaries come from the database clock, not the replicas' clocks, so two gateways with a
little clock drift still count into the same window. Fixed windows allow a burst of up to twice the
limit across a boundary; that is the accepted trade for one atomic UPSERT per request.
"""

from __future__ import annotations

import math

from gateway.domain.access import RouteClass
from gateway.domain.errors import RATE_LIMITED
from libs.common.errors import Problem


def bucket(key_id: str, route_class: RouteClass) -> str:
    return f"{key_id}:{route_class}"


def check(hits: int, limit: int, *, window_start: int, window_seconds: int, now_epoch: float) -> None:
    if hits <= limit:
        return
    retry_after = max(1, math.ceil(window_start + window_seconds - now_epoch))
    raise Problem(
        RATE_LIMITED,
        f"more than {limit} requests in {window_seconds} s for this key and route class",
        retry_after_seconds=retry_after,
        limit=limit,
        window_seconds=window_seconds,
    )
