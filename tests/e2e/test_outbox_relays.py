"""Two relay replicas on one outbox: every event is published, and each aggregate's order is kept."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

from aiokafka import AIOKafkaConsumer

from libs.common.db import UnitOfWork, create_engine
from libs.common.kafka import EpochWatcher, ensure_platform_topics, topic_name
from libs.common.outbox import OutboxRelay
from libs.common.testing.infra import Infra
from libs.common.testing.plugin import DatabaseFactory

AGGREGATES = 20
EVENTS_PER_AGGREGATE = 30


async def test_two_relays_publish_everything_in_aggregate_order(
    juhe_infra: Infra, migrated_database: DatabaseFactory, topic_namespace: str
) -> None:
    db = await migrated_database("ledger")
    engine = create_engine(db)
    uow = UnitOfWork(engine, source="ledger")
    await ensure_platform_topics(juhe_infra.bootstrap, topic_namespace)
    relays = []
    for _ in range(2):
        watcher = EpochWatcher(juhe_infra.bootstrap, interval_seconds=0.5)
        relay = OutboxRelay(
            engine,
            service="ledger",
            bootstrap=juhe_infra.bootstrap,
            epoch_watcher=watcher,
            topic_namespace=topic_namespace,
            batch_max=7,
            poll_interval_seconds=0.05,
        )
        relays += [asyncio.create_task(watcher.run()), asyncio.create_task(relay.run())]

    async def write(aggregate: int) -> None:
        # One transaction per event, as a service changing one aggregate would do.
        for n in range(EVENTS_PER_AGGREGATE):
            async with uow.begin() as tx:
                tx.publish(topic="ledger.transfers", type="test.step", subject=f"agg{aggregate}", data={"n": n})

    consumer = AIOKafkaConsumer(
        topic_name(topic_namespace, "ledger.transfers"),
        bootstrap_servers=juhe_infra.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await asyncio.gather(*(write(a) for a in range(AGGREGATES)))
        seen: dict[str, list[int]] = defaultdict(list)
        total = AGGREGATES * EVENTS_PER_AGGREGATE
        async with asyncio.timeout(60):
            while sum(len(v) for v in seen.values()) < total:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = json.loads(record.value)
                        seen[event["subject"]].append(event["data"]["n"])
    finally:
        await consumer.stop()
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await engine.dispose()
    assert len(seen) == AGGREGATES
    for subject, numbers in seen.items():
        assert numbers == list(range(EVENTS_PER_AGGREGATE)), f"{subject} out of order or duplicated: {numbers}"
