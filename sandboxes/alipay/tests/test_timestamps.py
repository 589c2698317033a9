"""`parse_beijing` reads the canonical timestamp without `strptime`: it must accept exactly what `strptime` accepts.

The reference is `strptime` itself with the same format; the cases are the edges of every field, the forms `strptime`
accepts besides the canonical one, and text generated around the format.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sandboxes.alipay.trades import BEIJING, TIME_FORMAT, parse_beijing


def by_strptime(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        return None


EDGES = [
    "2026-12-07 11:22:33",
    "0001-01-01 00:00:00",
    "0000-01-01 00:00:00",  # no year 0
    "9999-12-31 23:59:59",
    "2024-02-29 12:00:00",  # leap year
    "2026-02-29 12:00:00",  # not one
    "1900-02-29 12:00:00",  # a century, not a leap year
    "2000-02-29 12:00:00",  # a leap century
    "2026-04-31 00:00:00",
    "2026-00-10 00:00:00",
    "2026-13-10 00:00:00",
    "2026-01-00 00:00:00",
    "2026-01-32 00:00:00",
    "2026-01-01 24:00:00",
    "2026-01-01 23:60:00",
    "2026-01-01 23:59:60",  # strptime's regex takes 60 and 61, datetime refuses them
    "2026-01-01 23:59:61",
    "2026-01-01 23:59:62",
    "2026-1-01 00:00:00",  # one-digit fields: strptime accepts them
    "2026-01-1 00:00:00",
    "2026-01-01 0:00:00",
    "2026-01-01 00:0:00",
    "2026-01-01 00:00:0",
    "2026-01- 1 00:00:00",  # a space-padded day
    "2026-01-01  00:00:00",  # a run of whitespace for the space
    "2026-01-01\t00:00:00",
    "2026-01-01\n00:00:00",
    "2026-01-01T00:00:00",
    " 2026-01-01 00:00:00",
    "2026-01-01 00:00:00 ",
    "2026-01-01 00:00:00\n",
    "2026-01-01 00:00:00.5",
    "2026-01-01 00:00",
    "2026/01/01 00:00:00",
    "２０２６-０１-０１ ００:００:００",  # fullwidth digits: strptime's \d takes them
    "2026-01-01 00:00:0٣",  # an Arabic-Indic digit
    "+026-01-01 00:00:00",
    "20260-01-01 00:00:00",
    "-2026-01-01 00:00:00",
    "",
]


@pytest.mark.parametrize("value", EDGES)
def test_the_edges_are_judged_as_strptime_judges_them(value: str) -> None:
    assert parse_beijing(value) == by_strptime(value)


def test_the_canonical_form_is_an_aware_beijing_time() -> None:
    assert parse_beijing("2026-12-07 11:22:33") == datetime(2026, 12, 7, 11, 22, 33, tzinfo=BEIJING)


FIELD = st.text(alphabet="0123456789", min_size=1, max_size=3)
SEPARATOR = st.sampled_from(["-", ":", " ", "  ", "\t", "T", "/", ""])


@given(
    year=st.text(alphabet="0123456789", min_size=3, max_size=5),
    fields=st.lists(FIELD, min_size=5, max_size=5),
    separators=st.lists(SEPARATOR, min_size=5, max_size=5),
    tail=st.sampled_from(["", " ", "0", "\n", ".1"]),
)
@example(year="2026", fields=["02", "28", "23", "59", "59"], separators=["-", "-", " ", ":", ":"], tail="")
def test_text_around_the_format_is_judged_as_strptime_judges_it(
    year: str, fields: list[str], separators: list[str], tail: str
) -> None:
    value = year + "".join(separator + field for separator, field in zip(separators, fields, strict=True)) + tail
    assert parse_beijing(value) == by_strptime(value)


@given(moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_every_canonical_time_is_read_as_strptime_reads_it(moment: datetime) -> None:
    value = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} {moment:%H:%M:%S}"
    assert parse_beijing(value) == by_strptime(value) == moment.replace(microsecond=0, tzinfo=BEIJING)


@given(value=st.text(alphabet="0123456789-: \t٣２", max_size=24))
def test_any_text_of_the_format_s_characters_is_judged_as_strptime_judges_it(value: str) -> None:
    assert parse_beijing(value) == by_strptime(value)
