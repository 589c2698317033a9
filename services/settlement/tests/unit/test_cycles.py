"""Settlement dates: T+n over business days, D+n over calendar days, weekly, cutoffs, holidays, make-up days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from libs.common.errors import Problem
from services.settlement.domain.cycles import Calendar, Cycle, CycleKind, settle_date

# 2026: National Day holiday Thu 1 Oct .. Wed 7 Oct; make-up workday Sat 10 Oct (example calendar).
GOLDEN_WEEK = {date(2026, 10, d): False for d in range(1, 8)} | {date(2026, 10, 10): True}
CAL = Calendar(GOLDEN_WEEK)


def cst(day: date, hour: int, minute: int = 0) -> datetime:
    """A China-time moment, given in UTC as events carry it."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


@pytest.mark.parametrize(
    ("paid", "cycle", "expected"),
    [
        (cst(date(2026, 11, 24), 10), Cycle(CycleKind.T_PLUS, 1), date(2026, 11, 25)),  # Tue → Wed
        (cst(date(2026, 11, 27), 10), Cycle(CycleKind.T_PLUS, 1), date(2026, 11, 30)),  # Fri → Mon
        (cst(date(2026, 11, 28), 10), Cycle(CycleKind.T_PLUS, 0), date(2026, 11, 30)),  # Sat T+0 → Mon
        (cst(date(2026, 11, 24), 10), Cycle(CycleKind.T_PLUS, 0), date(2026, 11, 24)),
        (cst(date(2026, 9, 30), 10), Cycle(CycleKind.T_PLUS, 1), date(2026, 10, 8)),  # over the holiday
        (cst(date(2026, 10, 9), 10), Cycle(CycleKind.T_PLUS, 1), date(2026, 10, 10)),  # make-up Saturday
        (cst(date(2026, 11, 27), 10), Cycle(CycleKind.D_PLUS, 3), date(2026, 11, 30)),
        (cst(date(2026, 11, 24), 16), Cycle(CycleKind.T_PLUS, 1, cutoff=time(15)), date(2026, 11, 26)),  # after cutoff
        (cst(date(2026, 11, 24), 14), Cycle(CycleKind.T_PLUS, 1, cutoff=time(15)), date(2026, 11, 25)),
        (cst(date(2026, 11, 24), 10), Cycle(CycleKind.WEEKLY, weekday=0), date(2026, 11, 30)),  # next Monday
        (cst(date(2026, 11, 30), 10), Cycle(CycleKind.WEEKLY, weekday=0), date(2026, 12, 7)),  # Monday → next one
        (cst(date(2026, 9, 29), 10), Cycle(CycleKind.WEEKLY, weekday=3), date(2026, 10, 8)),  # Thu 1 Oct is a holiday
    ],
)
def test_settle_dates(paid: datetime, cycle: Cycle, expected: date) -> None:
    assert settle_date(paid, cycle, CAL) == expected


def test_china_time_decides_the_day() -> None:
    late_utc = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # 01:00 on the 25th in China
    assert settle_date(late_utc, Cycle(CycleKind.T_PLUS, 0), CAL) == date(2026, 11, 25)


def test_bad_cycles() -> None:
    with pytest.raises(Problem) as caught:
        Cycle(CycleKind.D_PLUS, days=31)
    assert caught.value.spec.code == "invalid_cycle"
    with pytest.raises(Problem):
        Cycle(CycleKind.WEEKLY, weekday=7)
    never = Calendar({date(2027, 1, 1): False})
    assert never.next_business_day(date(2027, 1, 1), include_today=True) == date(2027, 1, 4)
