"""An outage is not the event's fault: the inbox waits for the dependency instead of parking the event.

Before: a handler failing because the database (or a peer service) was down spent its five attempts in about
three seconds and the event went to the dead letters (or, with the database down too, the consumer was torn
down and rebuilt — the churn behind partitions left unconsumed in the fault test). Applied through
`InboxConsumer.apply`, what the Kafka loop calls per record, on a real database made unavailable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from libs.common.db import Tx, UnitOfWork, asyncpg_dsn, create_engine
from libs.common.errors import ErrorSpec, Problem
from libs.common.events import Envelope
from libs.common.inbox import InboxConsumer, Subscription
from libs.common.kafka import EpochWatcher
from libs.common.testing.infra import Infra

from .database_outage import database_outage
from .test_inbox_consumers import NAMESPACE, TOPIC, record

PEER_DOWN = ErrorSpec("ledger_unavailable", 503, "The ledger cannot be reached", retryable=True)


def consumer(uow: UnitOfWork, handler: Callable[[Tx, Envelope], Awaitable[None]], bootstrap: str) -> InboxConsumer:
    return InboxConsumer(
        uow,
        service="routing",
        bootstrap=bootstrap,
        group_id=f"{NAMESPACE}juhe-routing",
        subscriptions=[Subscription(TOPIC, handler)],
        epoch_watcher=EpochWatcher(bootstrap, interval_seconds=1),
        topic_namespace=NAMESPACE,
    )


async def rows(url: str, table: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_a_database_outage_waits_and_applies_the_event_once_afterwards(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    url = await migrated_database("routing")
    engine = create_engine(url)
    applied: list[str] = []

    async def handler(tx: Tx, envelope: Envelope) -> None:
        applied.append(envelope.id)

    try:
        inbox = consumer(UnitOfWork(engine, source="routing"), handler, juhe_infra.bootstrap)
        event = Envelope(type="payment.succeeded", source="cashier", subject="pay_1", data={})
        async with database_outage(juhe_infra.server_url, url):
            applying = asyncio.create_task(inbox.apply(record(event)))
            await asyncio.sleep(4)  # longer than five counted attempts took before (0.2 + 0.4 + 0.8 + 1.6 s)
            assert not applying.done(), "the event must wait for the database, not be parked or dropped"
        await asyncio.wait_for(applying, 60)
        assert applied == [event.id]
        assert await rows(url, "inbox") == 1 and await rows(url, "inbox_dead_letter") == 0
    finally:
        await engine.dispose()


async def test_a_peer_outage_waits_but_a_failing_handler_is_still_parked(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    url = await migrated_database("routing")
    engine = create_engine(url)
    peer_back = asyncio.Event()
    tried_often = asyncio.Event()  # more tries than handler_attempts_max: none of them counted
    tries: list[str] = []

    async def needs_peer(tx: Tx, envelope: Envelope) -> None:
        tries.append(envelope.id)
        if len(tries) > 5:
            tried_often.set()
        if not peer_back.is_set():
            raise Problem(PEER_DOWN, "connect refused")
        if envelope.subject == "poison":
            raise ValueError("a bug in the handler")

    try:
        inbox = consumer(UnitOfWork(engine, source="routing"), needs_peer, juhe_infra.bootstrap)
        event = Envelope(type="payment.succeeded", source="cashier", subject="pay_1", data={})
        applying = asyncio.create_task(inbox.apply(record(event)))
        await asyncio.wait_for(tried_often.wait(), 60)
        assert not applying.done()
        peer_back.set()
        await asyncio.wait_for(applying, 60)
        assert await rows(url, "inbox") == 1 and await rows(url, "inbox_dead_letter") == 0

        poison = Envelope(type="payment.succeeded", source="cashier", subject="poison", data={})
        await asyncio.wait_for(inbox.apply(record(poison)), 60)  # attempts counted, then parked
        assert await rows(url, "inbox_dead_letter") == 1
    finally:
        await engine.dispose()


async def test_a_consumer_whose_stop_hangs_leaves_the_group_for_good(juhe_infra: Infra) -> None:
    """aiokafka's stop awaits its coordination task before stopping heartbeats: a stop cut short by the bound
    left a member that kept heartbeating and never fetched, holding its partitions (seen in the fault test).
    Dropping it must end its heartbeats, so the group gives every partition to the next member."""
    from aiokafka import AIOKafkaConsumer

    from libs.common.kafka import ensure_topics, topic_name

    namespace = f"t{asyncio.get_running_loop().time():.0f}x."
    topic = topic_name(namespace, TOPIC)
    await ensure_topics(juhe_infra.bootstrap, [topic])
    inbox = consumer(
        UnitOfWork(create_engine("postgresql+asyncpg://unused@127.0.0.1:1/x"), source="routing"),
        lambda tx, envelope: asyncio.sleep(0),
        juhe_infra.bootstrap,
    )
    group = f"{namespace}juhe-routing"

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=juhe_infra.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
        )

    async def assigned(c: AIOKafkaConsumer, partitions: int) -> None:
        while len(c.assignment()) < partitions:
            await c.getmany(timeout_ms=200)

    first = member()
    await first.start()
    partitions = len(first.partitions_for_topic(topic) or ())
    await asyncio.wait_for(assigned(first, partitions), 60)
    coordinator = first._coordinator
    assert coordinator is not None

    async def hangs() -> None:  # a coordinator close that never finishes (a slow or gone broker)
        await asyncio.Event().wait()

    coordinator.close = hangs
    await inbox._drop(first)
    assert coordinator._heartbeat_task is None or coordinator._heartbeat_task.done()

    second = member()
    await second.start()
    try:
        await asyncio.wait_for(assigned(second, partitions), 90)  # the dropped member is gone from the group
    finally:
        await second.stop()
