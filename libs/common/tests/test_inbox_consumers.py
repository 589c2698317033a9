"""The inbox is keyed by (consumer, event id): two consumer groups of one service each apply an event once.

Keyed by event id alone (before issue 13), the first group to apply an event made every other group of the
same service skip it. Applied through `InboxConsumer.apply` (what the Kafka loop calls per record) on a real
service database; the broker's part (delivery) is not what is under test here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import Tx, UnitOfWork, asyncpg_dsn, create_engine
from libs.common.embedded import create_database, database_url
from libs.common.events import Envelope
from libs.common.inbox import Handler, InboxConsumer, Subscription
from libs.common.kafka import EVENT_TYPE_HEADER, EpochWatcher
from libs.common.migrations import INBOX_BY_CONSUMER_SQL
from libs.common.testing.infra import Infra

TOPIC = "cashier.payments"
NAMESPACE = "t0123456789."


def record(event: Envelope | bytes, *, offset: int = 0, type_header: str | None = None) -> ConsumerRecord[bytes, bytes]:
    """A fetched record of `event` (an envelope, or raw bytes), with the relay's event-type header when given."""
    value = event.to_bytes() if isinstance(event, Envelope) else event
    return ConsumerRecord(
        topic=f"{NAMESPACE}{TOPIC}",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=[(EVENT_TYPE_HEADER, type_header.encode())] if type_header is not None else [],
    )


def succeeded_only(engine: AsyncEngine, handler: Handler, bootstrap: str, **options: Any) -> InboxConsumer:
    """Routing's consumer with one subscription, to `payment.succeeded`."""
    return InboxConsumer(
        UnitOfWork(engine, source="routing"),
        service="routing",
        bootstrap=bootstrap,
        group_id=f"{NAMESPACE}juhe-routing",
        topic_namespace=NAMESPACE,
        subscriptions=[Subscription(TOPIC, handler, frozenset({"payment.succeeded"}))],
        epoch_watcher=EpochWatcher(bootstrap, interval_seconds=1),
        **options,
    )


def consumer(uow: UnitOfWork, group: str, applied: list[str], bootstrap: str) -> InboxConsumer:
    async def handler(tx: Tx, envelope: Envelope) -> None:
        applied.append(envelope.id)

    return InboxConsumer(
        uow,
        service="routing",
        bootstrap=bootstrap,
        group_id=f"{NAMESPACE}{group}",
        subscriptions=[Subscription(TOPIC, handler)],
        epoch_watcher=EpochWatcher(bootstrap, interval_seconds=1),
        topic_namespace=NAMESPACE,
    )


async def test_two_consumer_groups_of_one_service_each_apply_an_event_once(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    url = await migrated_database("routing")
    engine = create_engine(url)
    try:
        uow = UnitOfWork(engine, source="routing")
        first: list[str] = []
        second: list[str] = []
        a = consumer(uow, "juhe-routing", first, juhe_infra.bootstrap)
        b = consumer(uow, "juhe-routing-stats", second, juhe_infra.bootstrap)
        event = Envelope(type="payment.succeeded", source="cashier", subject="pay_1", data={})
        for _ in range(2):  # a redelivery to each group changes nothing
            await a.apply(record(event))
            await b.apply(record(event))
        assert first == [event.id] and second == [event.id]
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch("SELECT consumer, event_id FROM inbox ORDER BY consumer")
            # A row written before consumers were named counts as seen by every consumer.
            legacy = Envelope(type="payment.succeeded", source="cashier", subject="pay_2", data={})
            await conn.execute(
                "INSERT INTO inbox (consumer, event_id, topic, event_type) VALUES ('', $1, $2, $3)",
                legacy.id,
                TOPIC,
                legacy.type,
            )
        finally:
            await conn.close()
        assert [(r["consumer"], r["event_id"]) for r in rows] == [
            ("juhe-routing", event.id),  # the namespace is not part of the name: it is a test's topic prefix
            ("juhe-routing-stats", event.id),
        ]
        await a.apply(record(legacy))
        await b.apply(record(legacy))
        assert first == [event.id] and second == [event.id]
    finally:
        await engine.dispose()


async def test_the_migration_keeps_old_rows_as_seen_by_every_consumer(juhe_infra: Infra) -> None:
    """The old shape (event_id the key) turned into the new one: old rows get the legacy consumer ""."""
    name = f"t_inbox_{uuid.uuid4().hex[:12]}"
    await create_database(juhe_infra.server_url, name)
    juhe_infra.created_databases.append(name)
    conn = await asyncpg.connect(asyncpg_dsn(database_url(juhe_infra.server_url, name)))
    try:
        await conn.execute(
            "CREATE TABLE inbox (event_id text PRIMARY KEY, topic text NOT NULL, event_type text NOT NULL,"
            " received_at timestamptz NOT NULL DEFAULT now());"
            "CREATE TABLE inbox_dead_letter (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text,"
            ' topic text NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL, payload bytea NOT NULL,'
            " error text NOT NULL, failed_at timestamptz NOT NULL DEFAULT now());"
            "INSERT INTO inbox (event_id, topic, event_type) VALUES ('evt_old', 't', 'x')"
        )
        for statement in INBOX_BY_CONSUMER_SQL:
            await conn.execute(statement)
        assert [tuple(r) for r in await conn.fetch("SELECT consumer, event_id FROM inbox")] == [("", "evt_old")]
        key = await conn.fetchval(
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_index i"
            " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = 'inbox'::regclass AND i.indisprimary"
        )
        assert key == ["consumer", "event_id"]
        await conn.execute(
            "INSERT INTO inbox (consumer, event_id, topic, event_type) VALUES ('g', 'evt_old', 't', 'x')"
        )
        for statement in INBOX_BY_CONSUMER_SQL:  # idempotent: a fresh database already has this shape
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM inbox") == 2
    finally:
        await conn.close()


async def test_an_event_no_subscription_wants_leaves_no_trace(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    """A type none of the consumer's subscriptions names is skipped without a transaction or an inbox row (it
    has no effect to make exactly-once); a wanted one is applied and recorded as before."""
    url = await migrated_database("routing")
    engine = create_engine(url)
    try:
        applied: list[str] = []

        async def handler(tx: Tx, envelope: Envelope) -> None:
            applied.append(envelope.type)

        picky = succeeded_only(engine, handler, juhe_infra.bootstrap)
        unwanted = Envelope(type="payment.created", source="cashier", subject="pay_3", data={})
        wanted = Envelope(type="payment.succeeded", source="cashier", subject="pay_3", data={})
        for event in (unwanted, wanted, unwanted):
            await picky.apply(record(event))
        assert applied == ["payment.succeeded"]
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            assert [r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox")] == [wanted.id]
        finally:
            await conn.close()
    finally:
        await engine.dispose()


async def test_a_fetched_batch_is_one_transaction_and_a_failing_event_is_applied_alone(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    """A batch's events are applied in one transaction, each once (an event seen before or repeated in the batch
    is skipped, an unwanted type ignored); when one handler fails, the whole batch is rolled back — its effects
    with it — and each event is applied alone: the others once, the failing one parked."""
    url = await migrated_database("routing")
    engine = create_engine(url)
    try:
        transactions: dict[str, int] = {}

        async def handler(tx: Tx, envelope: Envelope) -> None:
            if envelope.data.get("poison"):
                raise ValueError("cannot apply this one")
            tx.publish(topic="routing.stats", type="applied", subject=envelope.id, data={})  # an effect to count
            transactions[envelope.id] = int((await tx.conn.exec_driver_sql("SELECT txid_current()")).scalar_one())

        inbox = succeeded_only(engine, handler, juhe_infra.bootstrap, handler_attempts_max=1)

        def event(**data: object) -> Envelope:
            return Envelope(type="payment.succeeded", source="cashier", subject="pay_4", data=data)

        seen, a, b = event(), event(), event()
        unwanted = Envelope(type="payment.created", source="cashier", subject="pay_4", data={})
        await inbox.apply(record(seen))
        await inbox.apply_batch([record(e) for e in (seen, a, unwanted, b, a)])
        assert transactions[a.id] == transactions[b.id] != transactions[seen.id]  # a and b: one transaction

        c, poison, d = event(), event(poison=True), event()
        await inbox.apply_batch([record(e) for e in (c, poison, d)])
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            effects = [r["key"] for r in await conn.fetch("SELECT key FROM outbox ORDER BY seq")]
            inboxed = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox")}
            parked = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox_dead_letter")]
        finally:
            await conn.close()
        assert effects == [seen.id, a.id, b.id, c.id, d.id]  # each once: the rolled-back batch left nothing
        assert inboxed == {seen.id, a.id, b.id, c.id, d.id} and parked == [poison.id]
        assert transactions[c.id] != transactions[d.id]  # applied alone after the batch failed
    finally:
        await engine.dispose()


async def test_unwanted_types_are_skipped_by_their_header_and_the_rest_judged_by_the_envelope(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    """A record whose event-type header (written by the outbox relay) names a type no subscription wants is skipped
    before its JSON is decoded (docs/performance.md, "Sixth pass"). A record without the header (published before
    the relay wrote one, or by another producer) is decoded and judged by its envelope as before, and so is one
    whose header names a wanted type: undecodable, either is parked as always."""
    url = await migrated_database("routing")
    engine = create_engine(url)
    applied: list[str] = []

    async def handler(tx: Tx, envelope: Envelope) -> None:
        applied.append(envelope.id)

    succeeded = Envelope(type="payment.succeeded", source="cashier", subject="pay_5", data={})
    unheaded = Envelope(type="payment.succeeded", source="cashier", subject="pay_6", data={})
    created = Envelope(type="payment.created", source="cashier", subject="pay_7", data={})
    try:
        await succeeded_only(engine, handler, juhe_infra.bootstrap).apply_batch(
            [
                record(b"not json: never decoded", offset=0, type_header="payment.created"),
                record(succeeded, offset=1, type_header="payment.succeeded"),
                record(unheaded, offset=2),  # no header: decoded, wanted by its envelope's type
                record(created, offset=3),  # no header: decoded, not wanted
                record(b"not json either", offset=4, type_header="payment.succeeded"),  # wanted: decoded, parked
                record(b"{broken", offset=5),  # no header: decoded, parked
            ]
        )
        assert applied == [succeeded.id, unheaded.id]
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            inbox_rows = await conn.fetch("SELECT event_id FROM inbox")
            parked = await conn.fetch('SELECT "offset" FROM inbox_dead_letter ORDER BY "offset"')
        finally:
            await conn.close()
        assert sorted(r["event_id"] for r in inbox_rows) == sorted([succeeded.id, unheaded.id])
        assert [r["offset"] for r in parked] == [4, 5]
    finally:
        await engine.dispose()
