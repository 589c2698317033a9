"""The time the service decides by: the system clock, unless the app was given another in
`runtime.extras["clock"]` (tests move it to cross validity, lock and undo windows without waiting)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def clock_of(extras: dict[str, Any]) -> Clock:
    chosen: Clock = extras.get("clock", system_clock)
    return chosen
