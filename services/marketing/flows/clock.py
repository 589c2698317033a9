"""The time the service decides by: the system clock, unless the service's context holds another
(`MarketingContext.clock`: tests move it to cross validity, lock and undo windows without waiting)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)
