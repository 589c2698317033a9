"""Shutdown is bounded: a cancel that a library swallows still stops the worker loops (libs.common.tasks).

The hang this guards against (libs/common/README.md "Shutdown"): aiokafka's client close cancels its own
metadata task and awaits it under `suppress(CancelledError)`; a cancel of the calling loop that arrives
during that wait is eaten there and the loop (`while True`) never ends, so the app's lifespan waits forever.
These tests cancel exactly inside that window, on the real broker, and require the loop to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from libs.common.kafka import EpochWatcher, ensure_topics
from libs.common.tasks import close_bounded, raise_if_cancelled, stop_task
from libs.common.testing.infra import Infra, await_chain

WINDOW_TRIES = 40  # runs of the loop until a cancel lands inside the client's close (usually the first few)
STOP_BOUND_SECONDS = 10.0


def in_client_close(task: asyncio.Task[Any]) -> bool:
    """Whether `task` is waiting inside aiokafka's `AIOKafkaClient.close` (the window that ate cancels)."""
    return any(step.startswith("client.py:") and step.endswith(" close") for step in await_chain(task.get_coro()))


async def cancel_inside_client_close(start: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task[Any] | None:
    """Start `start()` as a task and cancel it at a moment it waits in a Kafka client's close; None if
    it never did (the loop iteration is the unit: every iteration is inspected)."""
    task = asyncio.create_task(start())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while not task.done() and loop.time() < deadline:
        if in_client_close(task):
            task.cancel()
            return task
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, STOP_BOUND_SECONDS)
    return None


async def test_epoch_watcher_stops_when_cancelled_inside_a_client_close(juhe_infra: Infra) -> None:
    for _ in range(WINDOW_TRIES):
        watcher = EpochWatcher(juhe_infra.bootstrap, interval_seconds=0.05)
        task = await cancel_inside_client_close(watcher.run)
        if task is None:
            continue
        done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
        assert done, f"the watcher lost its cancel and kept running: {await_chain(task.get_coro())}"
        assert task.cancelled()
        return
    pytest.fail("never caught the watcher inside a client close")


async def test_ensure_topics_passes_on_a_cancel_that_arrives_in_its_close(juhe_infra: Infra) -> None:
    for i in range(WINDOW_TRIES):
        ensure = functools.partial(ensure_topics, juhe_infra.bootstrap, [f"shutdown.t{i}"])
        task = await cancel_inside_client_close(ensure)
        if task is None:
            continue
        done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
        assert done and task.cancelled(), "ensure_topics returned normally: the caller's cancel was swallowed"
        return
    pytest.fail("never caught ensure_topics inside a client close")


async def swallowing_loop(rounds: list[int], sub_started: asyncio.Event) -> None:
    """A loop shaped like the one that hung: each round cancels a helper task and awaits it under
    `suppress(CancelledError)` (what aiokafka's close does), so a cancel arriving then is eaten."""
    while True:
        raise_if_cancelled()
        rounds.append(1)
        helper = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        sub_started.set()
        helper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await helper
        await asyncio.sleep(0.01)


async def test_stop_task_stops_a_loop_that_swallows_cancels() -> None:
    rounds: list[int] = []
    started = asyncio.Event()
    task = asyncio.create_task(swallowing_loop(rounds, started))
    await started.wait()
    assert await stop_task(task, name="swallowing loop", timeout_seconds=STOP_BOUND_SECONDS)
    assert task.cancelled()


async def test_stop_task_gives_up_at_its_bound_on_a_task_that_never_ends() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not await stop_task(task, name="stubborn", timeout_seconds=0.3)
    release.set()
    await asyncio.wait({task}, timeout=STOP_BOUND_SECONDS)
    assert task.done()


async def test_close_bounded_bounds_a_close_that_never_returns() -> None:
    never = asyncio.Event()
    await close_bounded(never.wait(), name="never", timeout_seconds=0.2)  # returns instead of hanging
