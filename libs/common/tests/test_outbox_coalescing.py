"""The outbox's writer and relay on a real service database and broker (docs/performance.md, "Seventh pass"):
`Tx.flush_events` writes a transaction's events in one statement, in publish order; a relay woken while busy
takes the rows of the transactions that commit during its coalescing wait in the same pass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from libs.common import outbox as outbox_module
from libs.common.db import UnitOfWork, asyncpg_dsn, create_engine
from libs.common.kafka import EpochWatcher, ensure_platform_topics
from libs.common.outbox import OutboxRelay
from libs.common.testing.infra import Infra

TOPIC = "ledger.transfers"


async def _rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch("SELECT seq, key, payload, published_at FROM outbox ORDER BY seq")
        return rows
    finally:
        await conn.close()


async def test_a_transactions_events_are_written_in_publish_order(
    migrated_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await migrated_database("ledger")
    engine = create_engine(url)
    uow = UnitOfWork(engine, source="ledger")
    try:
        async with uow.begin() as tx:
            published = [
                tx.publish(topic=TOPIC, type="test.step", subject=subject, data={"n": n})
                for n, subject in enumerate(["agg1", "agg2", "agg1", "agg1", "agg2"])
            ]
        async with uow.begin() as tx:
            pass  # no events: nothing written
    finally:
        await engine.dispose()
    rows = await _rows(url)
    assert [row["payload"] for row in rows] == [envelope.to_bytes() for envelope in published]
    assert [row["key"] for row in rows] == ["agg1", "agg2", "agg1", "agg1", "agg2"]


async def test_a_busy_relay_takes_the_rows_committed_during_its_wait_in_one_pass(
    migrated_database: Callable[[str], Awaitable[str]],
    juhe_infra: Infra,
    topic_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Busy for the whole test, however slow the machine is between the first pass and the next write.
    monkeypatch.setattr(outbox_module, "COALESCE_BUSY_SECONDS", 600.0)
    url = await migrated_database("ledger")
    engine = create_engine(url)
    uow = UnitOfWork(engine, source="ledger")
    await ensure_platform_topics(juhe_infra.bootstrap, topic_namespace)
    watcher = EpochWatcher(juhe_infra.bootstrap, interval_seconds=5)
    # A wait long enough that the second transaction below always commits within it.
    relay = OutboxRelay(
        engine,
        service="ledger",
        bootstrap=juhe_infra.bootstrap,
        epoch_watcher=watcher,
        topic_namespace=topic_namespace,
        coalesce_seconds=2.0,
    )
    tasks = [asyncio.create_task(watcher.run()), asyncio.create_task(relay.run())]

    async def write(subject: str) -> None:
        async with uow.begin() as tx:
            tx.publish(topic=TOPIC, type="test.step", subject=subject, data={})

    async def published(count: int) -> list[asyncpg.Record]:
        async with asyncio.timeout(30):
            while True:
                rows = await _rows(url)
                if len(rows) == count and all(row["published_at"] is not None for row in rows):
                    return rows
                await asyncio.sleep(0.05)

    try:
        await write("first")  # at rest: the relay passes at once, and is busy from then on
        await published(1)
        await write("second")
        await write("third")
        rows = await published(3)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()
    # One pass marks its rows with one time: the two transactions went in the same pass.
    assert rows[1]["published_at"] == rows[2]["published_at"] != rows[0]["published_at"]
