"""Stopping asyncio work for sure: cancellation that a library swallowed, and bounded stops.

Why this exists (the shutdown hang of issue 13, libs/common/README.md "Shutdown"): aiokafka's
`AIOKafkaClient.close()` (behind every admin/consumer/producer close) does
`self._sync_task.cancel(); with suppress(CancelledError): await self._sync_task`. A cancel of the *calling*
task that arrives during that wait is delivered to `_sync_task` instead (the caller is waiting on it), and the
`suppress` then eats it: the caller's cancellation is gone. A worker loop (`while True`) that loses its
cancel this way never ends, and whoever awaits it after `task.cancel()` (the app's lifespan) waits forever.
Any "cancel a subtask, then await it under suppress" has the same hole, and Python 3.11's `asyncio.wait_for`
returns normally when its inner future finishes at the moment the caller is cancelled.

What survives all of these: `Task.cancelling()`. It counts cancel requests and only `uncancel()` (called by
`asyncio.timeout` for its own cancels) lowers it, so a loop can see that it was asked to stop even when the
`CancelledError` never reached it. `raise_if_cancelled()` turns that back into a `CancelledError`;
`stop_task()` cancels a task and, since a cancel may be lost, cancels it again until it ends or a bound
passes; `close_bounded()` runs a client's close with a bound and re-raises a cancel the close swallowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from libs.common.logging import get_logger

log = get_logger("juhe.tasks")

STOP_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
RECANCEL_INTERVAL_SECONDS = 0.5


def cancel_requested() -> bool:
    """Whether the current task has been asked to cancel (even if the `CancelledError` was swallowed)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that some library swallowed. Call it at the top of
    every iteration of a loop that runs until cancelled: a lost cancel then ends the loop one round later
    instead of never."""
    if cancel_requested():
        raise asyncio.CancelledError


async def stop_task(
    task: asyncio.Task[object] | asyncio.Task[None],
    *,
    name: str,
    timeout_seconds: float = STOP_TIMEOUT_SECONDS,
) -> bool:
    """Cancel `task` and wait for it, at most `timeout_seconds`; True when it ended.

    The task is cancelled again every `RECANCEL_INTERVAL_SECONDS`: a cancel it lost (see the module doc)
    is followed by another that lands in whatever it awaits next. Past the bound it is left behind with an
    error log naming it, so a stop never hangs its caller. What the task raised is not re-raised (it is
    being stopped), but a cancel of the *caller* that arrives meanwhile is (the caller is being stopped too).
    """
    caller = asyncio.current_task()
    caller_cancels = caller.cancelling() if caller is not None else 0
    caller_cancelled = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("task did not stop in time; left behind", task=name, timeout_seconds=timeout_seconds)
            break
        try:  # asyncio.wait never raises the waited task's outcome and never cancels it
            await asyncio.wait({task}, timeout=min(RECANCEL_INTERVAL_SECONDS, remaining))
        except asyncio.CancelledError:  # the caller is being stopped too: finish this stop first (bounded)
            caller_cancelled = True
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning("task ended with an error while stopping", task=name, error=repr(task.exception()))
    if caller_cancelled or (caller is not None and caller.cancelling() > caller_cancels):
        raise asyncio.CancelledError
    return task.done()


async def close_bounded(close: Awaitable[object], *, name: str, timeout_seconds: float = CLOSE_TIMEOUT_SECONDS) -> None:
    """Await a client's close (`consumer.stop()`, `admin.close()`, …): failures are logged, not raised (the
    client is being dropped), the wait is bounded, and a cancel of the caller that the close swallowed is
    raised again afterwards."""
    caller = asyncio.current_task()
    caller_cancels = caller.cancelling() if caller is not None else 0
    try:
        async with asyncio.timeout(timeout_seconds):
            await close
    except TimeoutError:
        log.warning("close did not finish in time; dropped", client=name, timeout_seconds=timeout_seconds)
    except Exception as exc:
        log.info("close failed; dropped", client=name, error=repr(exc))
    if caller is not None and caller.cancelling() > caller_cancels:
        raise asyncio.CancelledError
