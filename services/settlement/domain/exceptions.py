"""The reconciliation exceptions pool: a mismatch as a person's work item (pure rules, no I/O).

open → assigned → resolved (re-assigning an assigned item is allowed; resolving needs a reason and can be
done from open too). A resolved item is final: a later run of the same day that still disagrees makes a
new item, so nothing needs re-opening. Ageing counts from the moment the run found the mismatch.
"""

from __future__ import annotations

from enum import StrEnum

from libs.common.errors import Problem
from services.settlement.domain.errors import RECONCILIATION_EXCEPTION_RESOLVED

REASON_LENGTH_MAX = 1000
ACTOR_LENGTH_MAX = 200
DAY_SECONDS = 86_400
# Ageing buckets a desk works by: (upper bound in seconds, label); beyond the last one is "over_7d".
AGEING_BUCKETS: tuple[tuple[int, str], ...] = (
    (DAY_SECONDS, "under_1d"),
    (3 * DAY_SECONDS, "1d_3d"),
    (7 * DAY_SECONDS, "3d_7d"),
)
AGEING_OLDEST = "over_7d"


class ExceptionState(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


# What the list filter `state` accepts: one state, or every state but resolved (the default).
STATE_FILTERS = ("unresolved", *(s.value for s in ExceptionState))


def check_changeable(state: ExceptionState, item_id: int) -> None:
    """Every action (assign, re-query, resolve) needs an item that is not resolved yet."""
    if state is ExceptionState.RESOLVED:
        raise Problem(RECONCILIATION_EXCEPTION_RESOLVED, f"reconciliation exception {item_id} is already resolved")


def ageing_bucket(age_seconds: int) -> str:
    for bound, label in AGEING_BUCKETS:
        if age_seconds < bound:
            return label
    return AGEING_OLDEST
