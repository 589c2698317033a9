"""Settlement cycles (T+0, T+1, D+n, weekly) over an editable business-day calendar.

Why the calendar is data: Chinese public holidays and their make-up workdays (调休) are announced each
year by the State Council, so the platform edits them; weekends are non-business days unless listed
as make-up workdays, weekdays are business days unless listed as holidays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from libs.common.errors import Problem
from services.settlement.domain.errors import INVALID_CYCLE

BUSINESS_DAYS_SEARCH_MAX = 370  # a calendar with no business day in a year is a configuration error
DEFAULT_TIMEZONE = ZoneInfo("Asia/Shanghai")


class CycleKind(enum.StrEnum):
    T_PLUS = "t_plus"  # n business days after the trade day (T+0, T+1)
    D_PLUS = "d_plus"  # n calendar days after the trade day
    WEEKLY = "weekly"  # the first given weekday after the trade day


@dataclass(frozen=True, slots=True)
class Calendar:
    """Overrides only: date -> is it a business day."""

    overrides: Mapping[date, bool]

    def is_business_day(self, day: date) -> bool:
        override = self.overrides.get(day)
        return override if override is not None else day.weekday() < 5

    def next_business_day(self, day: date, *, include_today: bool) -> date:
        current = day if include_today else day + timedelta(days=1)
        for _ in range(BUSINESS_DAYS_SEARCH_MAX):
            if self.is_business_day(current):
                return current
            current += timedelta(days=1)
        raise Problem(INVALID_CYCLE, f"no business day within {BUSINESS_DAYS_SEARCH_MAX} days of {day}")


@dataclass(frozen=True, slots=True)
class Cycle:
    kind: CycleKind
    days: int = 1  # n of T+n / D+n
    weekday: int = 0  # weekly: 0 = Monday
    cutoff: time = time(23, 59, 59, 999_999)  # payments at or after the cutoff belong to the next trade day

    def __post_init__(self) -> None:
        if not 0 <= self.days <= 30:
            raise Problem(INVALID_CYCLE, "days must be 0..30")
        if not 0 <= self.weekday <= 6:
            raise Problem(INVALID_CYCLE, "weekday must be 0 (Monday)..6")


DEFAULT_CYCLE = Cycle(CycleKind.T_PLUS, days=1)


def trade_day(moment: datetime, cycle: Cycle, tz: ZoneInfo = DEFAULT_TIMEZONE) -> date:
    local = moment.astimezone(tz)
    return local.date() + timedelta(days=1) if local.time() >= cycle.cutoff else local.date()


def settle_date(moment: datetime, cycle: Cycle, calendar: Calendar, tz: ZoneInfo = DEFAULT_TIMEZONE) -> date:
    """The business day on which a payment made at `moment` is settled to the merchant."""
    day = trade_day(moment, cycle, tz)
    if cycle.kind is CycleKind.D_PLUS:
        return day + timedelta(days=cycle.days)
    if cycle.kind is CycleKind.WEEKLY:
        ahead = (cycle.weekday - day.weekday()) % 7 or 7
        return calendar.next_business_day(day + timedelta(days=ahead), include_today=True)
    current = calendar.next_business_day(day, include_today=True)
    for _ in range(cycle.days):
        current = calendar.next_business_day(current, include_today=False)
    return current
