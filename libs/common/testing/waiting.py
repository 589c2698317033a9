"""Bounded polling for tests: wait for a condition, never for a fixed time (a loaded machine is slow)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

EVENTUALLY_SECONDS = 30.0
POLL_SECONDS = 0.05


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], what: str, *, timeout_seconds: float = EVENTUALLY_SECONDS
) -> Any:
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
        await asyncio.sleep(POLL_SECONDS)
