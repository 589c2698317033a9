"""Loops woken by their work (libs/common/wakeups.py, `run_rounds(wake=...)`), on the real PostgreSQL: a due row
committed into a table with the work trigger ends an idle loop's long sleep; a rolled-back insert, or a row that is
not due, wakes nobody; and while the listener is not connected the loop polls on its interval as before."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from libs.common.db import create_engine
from libs.common.tasks import stop_task
from libs.common.testing.waiting import eventually
from libs.common.wakeups import Wakeups, notify_work, work_notify_trigger_sql
from libs.common.web import run_rounds

# Longer than any wait below: a round in between is a wake-up, never the timer.
IDLE_INTERVAL_SECONDS = 60.0


async def test_a_committed_due_row_wakes_the_idle_loop_and_nothing_else_does(
    migrated_database: Callable[[str], Awaitable[str]],
) -> None:
    engine = create_engine(await migrated_database("migration"))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE test_jobs (id serial PRIMARY KEY, status text NOT NULL)"))
        for statement in work_notify_trigger_sql("test_jobs", ("pending",)):
            await conn.execute(text(statement))
    hub = Wakeups(engine)
    rounds = 0

    async def round_once() -> int:
        nonlocal rounds
        rounds += 1
        return 0

    listener = asyncio.create_task(hub.run())
    loop = asyncio.create_task(
        run_rounds("test", round_once, interval_seconds=IDLE_INTERVAL_SECONDS, wake=hub.waiter("test_jobs"))
    )
    try:
        await eventually(lambda: hub.listening and rounds, "the listener connected and a first round")
        settled = await eventually(_settles(lambda: rounds), "the loop asleep")
        async with engine.begin() as conn:  # a row that is not due
            await conn.execute(text("INSERT INTO test_jobs (status) VALUES ('done')"))
        async with engine.connect() as conn:  # a due row rolled back
            await conn.execute(text("INSERT INTO test_jobs (status) VALUES ('pending')"))
            await conn.rollback()
        async with engine.begin() as conn:  # another queue's work
            await notify_work(conn, "another_queue")
        assert await eventually(_settles(lambda: rounds), "the loop still asleep") == settled, "nothing woke it"
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO test_jobs (status) VALUES ('pending'), ('pending')"))
        await eventually(lambda: rounds == settled + 1, "one round right after the commit", timeout_seconds=20)
    finally:
        await stop_task(loop, name="loop")
        await stop_task(listener, name="listener")
        await engine.dispose()


async def test_without_a_listener_a_woken_loop_polls_on_its_interval() -> None:
    """The fallback: a NOTIFY is lost while nobody listens, so the loop must not sleep long then."""
    hub = Wakeups(create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))  # never connected
    rounds = 0

    async def round_once() -> int:
        nonlocal rounds
        rounds += 1
        return 0

    loop = asyncio.create_task(run_rounds("test", round_once, interval_seconds=0.05, wake=hub.waiter("jobs")))
    try:
        await eventually(lambda: rounds >= 5, "rounds on the interval (idle: at most 0.2 s apart)", timeout_seconds=10)
    finally:
        await stop_task(loop, name="loop")


def _settles(count: Callable[[], int]) -> Callable[[], Awaitable[int | None]]:
    """A check that returns the count once it stayed the same for a second (the loop in its long sleep)."""

    async def check() -> int | None:
        before = count()
        await asyncio.sleep(1.0)
        return before if count() == before else None

    return check
