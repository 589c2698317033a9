"""Bounded polling for tests: wait for a condition, never for a fixed time (a loaded machine is slow).

One helper in two forms, so no test writes its own `deadline = time.monotonic() + …` loop again:
`eventually` for async tests (checks may be sync or async) and `eventually_sync` for threads, subprocesses
and browser tests. Both call the check until it returns something truthy and hand that value back, so a
wait can also fetch what it waited for (`row = await eventually(lambda: load(key), "the row exists")`).
A check that is "not yet" by raising (a 409 while a key is in progress, a refused connection) catches
its expected exception and returns None; anything else it lets through fails the test at once.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

EVENTUALLY_SECONDS = 30.0
POLL_SECONDS = 0.05


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout_seconds: float = ...,
    poll_seconds: float = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout_seconds: float = ...,
    poll_seconds: float = ...,
) -> T: ...


async def eventually(
    check: Callable[[], object],
    what: str,
    *,
    timeout_seconds: float = EVENTUALLY_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> object:
    """Call `check` (sync or async) until it returns something truthy, and return that; fail naming `what`
    after `timeout_seconds`. The bound is generous: it only decides how long a broken test takes to fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout_seconds}s: {what}")
        await asyncio.sleep(poll_seconds)


def eventually_sync(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout_seconds: float = EVENTUALLY_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> T:
    """`eventually` for code without an event loop (threads, subprocesses, Playwright's sync API): the
    same contract, sleeping the thread between checks."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_seconds}s: {what}")
        time.sleep(poll_seconds)
