"""The one bounded-polling helper (libs/common/testing/waiting.py): it hands back the first truthy value,
accepts sync and async checks, and fails naming what it waited for once the bound has passed."""

from __future__ import annotations

import itertools

import pytest

from libs.common.testing.waiting import eventually, eventually_sync


def test_the_sync_form_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert eventually_sync(lambda: (n := next(calls)) >= 3 and n, "the third call", poll_seconds=0) == 3


def test_the_sync_form_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="never true"):
        eventually_sync(lambda: None, "never true", timeout_seconds=0, poll_seconds=0)


async def test_the_async_form_awaits_async_checks_and_calls_sync_ones() -> None:
    calls = itertools.count(1)

    async def row() -> dict[str, int] | None:
        n = next(calls)
        return {"n": n} if n >= 2 else None

    assert await eventually(row, "a row", poll_seconds=0) == {"n": 2}
    assert await eventually(lambda: "ready", "a sync check") == "ready"


async def test_the_async_form_fails_naming_what_it_waited_for() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match="the key reserved"):
        await eventually(never, "the key reserved", timeout_seconds=0, poll_seconds=0)
