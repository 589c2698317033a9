"""`python -m deploy.dead_letters`: list and replay parked events on the real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common.db import asyncpg_dsn
from libs.common.events import Envelope
from libs.common.kafka import ensure_topics
from libs.common.testing.infra import Infra
from libs.common.testing.plugin import DatabaseFactory

RunModule = Callable[..., subprocess.CompletedProcess[str]]
READ_TIMEOUT_SECONDS = 30.0


async def park(url: str, topic: str, partition: int, envelope: Envelope | None) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row_id: int = await conn.fetchval(
            'INSERT INTO inbox_dead_letter (event_id, topic, partition, "offset", payload, error) '
            "VALUES ($1, $2, $3, 7, $4, 'RuntimeError(boom)') RETURNING id",
            envelope.id if envelope else None,
            topic,
            partition,
            envelope.to_bytes() if envelope else b"\xff not json",
        )
        return row_id
    finally:
        await conn.close()


async def parked_ids(url: str) -> list[int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM inbox_dead_letter ORDER BY id")]
    finally:
        await conn.close()


async def read_partition(bootstrap: str, topic: str, partition: int, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_SECONDS
        while len(values) < count and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            values += [r.value for r in batch.get(tp, []) if r.value is not None]
        return values
    finally:
        await consumer.stop()


async def test_replay_publishes_to_the_same_partition_then_forgets_the_row(
    juhe_infra: Infra, migrated_database: DatabaseFactory, topic_namespace: str, run_module: RunModule
) -> None:
    url = await migrated_database("marketing")
    topic = f"{topic_namespace}cashier.payments"
    await ensure_topics(juhe_infra.bootstrap, [topic], partitions=4)
    first = Envelope(type="payment.succeeded", source="cashier", subject="pay_1", data={"amount_minor": 100})
    second = Envelope(type="payment.failed", source="cashier", subject="pay_2", data={})
    first_id = await park(url, topic, 2, first)
    second_id = await park(url, topic, 2, second)
    poison_id = await park(url, topic, 1, None)
    env: dict[str, Any] = {
        "JUHE_MARKETING_DATABASE_URL": url,
        "JUHE_MARKETING_KAFKA_BOOTSTRAP_SERVERS": juhe_infra.bootstrap,
    }

    listed = await asyncio.to_thread(run_module, "deploy.dead_letters", "marketing", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == [first.id, second.id, "None"]
    assert "RuntimeError(boom)" in listed.stdout

    refused = await asyncio.to_thread(run_module, "deploy.dead_letters", "marketing", "replay", env=env)
    assert refused.returncode == 2  # neither ids nor --all: nothing replayed
    assert await parked_ids(url) == [first_id, second_id, poison_id]

    done = await asyncio.to_thread(
        run_module, "deploy.dead_letters", "marketing", "replay", str(first_id), str(second_id), env=env
    )
    assert done.returncode == 0, done.stderr
    assert await parked_ids(url) == [poison_id]  # the undecodable one stays until someone decides
    assert await read_partition(juhe_infra.bootstrap, topic, 2, 2) == [first.to_bytes(), second.to_bytes()]
    assert Envelope.from_bytes((await read_partition(juhe_infra.bootstrap, topic, 2, 1))[0]).id == first.id

    again = await asyncio.to_thread(run_module, "deploy.dead_letters", "marketing", "replay", "--all", env=env)
    assert again.returncode == 0 and await parked_ids(url) == []
    assert await read_partition(juhe_infra.bootstrap, topic, 1, 1) == [b"\xff not json"]
