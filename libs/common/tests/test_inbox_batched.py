"""A `batched` handler takes each run of a fetched batch's new events at once (docs/performance.md, fifth pass).

Applied through `InboxConsumer.apply_batch` (what the Kafka loop calls per fetch) on a real service database: the
runs keep the fetch order across handlers, an event seen before or repeated is left out, and a failing run rolls
the batch back and each event is applied alone (the batched handler then gets one event), the poison one parked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from libs.common.db import Tx, UnitOfWork, asyncpg_dsn, create_engine
from libs.common.events import Envelope
from libs.common.inbox import InboxConsumer, Subscription, batched
from libs.common.kafka import EpochWatcher
from libs.common.testing.infra import Infra
from libs.common.tests.test_inbox_consumers import NAMESPACE, TOPIC, record


async def test_a_batched_handler_takes_runs_in_fetch_order_and_falls_back_to_one_event(
    migrated_database: Callable[[str], Awaitable[str]], juhe_infra: Infra
) -> None:
    url = await migrated_database("routing")
    engine = create_engine(url)
    try:
        calls: list[tuple[str, list[str]]] = []

        async def many(tx: Tx, events: Sequence[Envelope]) -> None:
            if any(e.data.get("poison") for e in events):
                raise ValueError("cannot apply this one")
            for e in events:
                tx.publish(topic="routing.stats", type="applied", subject=e.subject, data={})  # an effect to count
            calls.append(("many", [e.subject for e in events]))

        async def one(tx: Tx, event: Envelope) -> None:
            tx.publish(topic="routing.stats", type="applied", subject=event.subject, data={})
            calls.append(("one", [event.subject]))

        inbox = InboxConsumer(
            UnitOfWork(engine, source="routing"),
            service="routing",
            bootstrap=juhe_infra.bootstrap,
            group_id=f"{NAMESPACE}juhe-routing",
            topic_namespace=NAMESPACE,
            handler_attempts_max=1,
            subscriptions=[
                Subscription(TOPIC, batched(many), frozenset({"payment.succeeded"})),
                Subscription(TOPIC, one, frozenset({"payment.failed"})),
            ],
            epoch_watcher=EpochWatcher(juhe_infra.bootstrap, interval_seconds=1),
        )

        def event(subject: str, type: str = "payment.succeeded", **data: object) -> Envelope:
            return Envelope(type=type, source="cashier", subject=subject, data=data)

        seen, a, b, c, d = event("seen"), event("a"), event("b"), event("c", "payment.failed"), event("d")
        unwanted = event("x", "payment.created")
        await inbox.apply(record(seen))  # alone: the batched handler gets it as a run of one
        await inbox.apply_batch([record(e) for e in (seen, a, unwanted, b, a, c, d)])
        assert calls == [("many", ["seen"]), ("many", ["a", "b"]), ("one", ["c"]), ("many", ["d"])]

        calls.clear()
        e, poison, f = event("e"), event("poison", poison=True), event("f")
        await inbox.apply_batch([record(x) for x in (e, poison, f)])
        assert calls == [("many", ["e"]), ("many", ["f"])]  # the batch rolled back, then each alone
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            effects = [r["key"] for r in await conn.fetch("SELECT key FROM outbox ORDER BY seq")]
            parked = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox_dead_letter")]
        finally:
            await conn.close()
        assert effects == ["seen", "a", "b", "c", "d", "e", "f"]  # each once: the rolled-back run left nothing
        assert parked == [poison.id]
    finally:
        await engine.dispose()
