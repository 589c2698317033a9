"""The inbox consumer: each event's effect applied exactly once, whatever Kafka redelivers.

For every record: one transaction inserts (consumer, event id) into `inbox` (ON CONFLICT DO NOTHING) and,
only if that row is new, runs the handlers; then it commits. The consumer is the group's name without the
topic namespace (`consumer_name`), so two consumer groups of one service each apply an event once.
Offsets are committed to Kafka only after the
database commit, so a crash in between means redelivery, and redelivery means the inbox says "seen".
A handler that keeps failing is retried with backoff, then the record is parked in
`inbox_dead_letter` (nothing is lost; an operator replays it) so one poison event cannot stop the
partition forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Counter
from sqlalchemy import exists, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from libs.common.db import Tx, UnitOfWork
from libs.common.events import Envelope
from libs.common.faults import crash_point
from libs.common.kafka import EpochWatcher, ensure_topics, topic_name
from libs.common.logging import get_logger, trace_id_var
from libs.common.outbox_tables import LEGACY_INBOX_CONSUMER, inbox, inbox_dead_letter
from libs.common.tasks import close_bounded, raise_if_cancelled, stop_task

log = get_logger("juhe.inbox")

Handler = Callable[[Tx, Envelope], Awaitable[None]]

applied_total = Counter("juhe_inbox_applied_total", "Events applied", ["service", "type"])
duplicate_total = Counter("juhe_inbox_duplicate_total", "Redelivered events skipped", ["service"])
dead_letter_total = Counter("juhe_inbox_dead_letter_total", "Events parked after repeated failures", ["service"])

RETRY_BACKOFF_BASE_SECONDS = 0.2
RETRY_BACKOFF_MAX_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Subscription:
    """Run `handler` for events of `event_types` (all types when empty) on `topic`."""

    topic: str
    handler: Handler
    event_types: frozenset[str] = frozenset()

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class InboxConsumer:
    def __init__(
        self,
        uow: UnitOfWork,
        *,
        service: str,
        bootstrap: str,
        group_id: str,
        subscriptions: Sequence[Subscription],
        epoch_watcher: EpochWatcher,
        topic_namespace: str = "",
        batch_max: int = 200,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        handler_attempts_max: int = 5,
    ) -> None:
        self.uow = uow
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.subscriptions = list(subscriptions)
        self.epoch_watcher = epoch_watcher
        self.topic_namespace = topic_namespace
        self.batch_max = batch_max
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.handler_attempts_max = handler_attempts_max
        self._topics = {topic_name(topic_namespace, s.topic): s.topic for s in self.subscriptions}
        # The inbox key: stable across topic namespaces (tests give each run its own prefix).
        self.consumer_name = group_id.removeprefix(topic_namespace)

    async def run(self) -> None:
        """Consume until cancelled; rebuild the consumer whenever the broker epoch changes.

        Stopping is bounded (libs.common.tasks): the consume and epoch tasks are stopped with re-cancels,
        the aiokafka consumer's stop (a group leave, a coordinator lookup) has a bound, and a cancel that a
        client's close swallowed still ends this loop."""
        while True:
            raise_if_cancelled()
            await self.epoch_watcher.wait_ready()
            version = self.epoch_watcher.version
            consume = asyncio.create_task(self._consume_until_error(), name=f"{self.group_id} consume")
            epoch_change = asyncio.create_task(self.epoch_watcher.wait_changed(version), name=f"{self.group_id} epoch")
            try:
                done, _ = await asyncio.wait({consume, epoch_change}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (consume, epoch_change):
                    await stop_task(task, name=task.get_name())
            if consume in done and not consume.cancelled() and consume.exception() is not None:
                log.warning("consumer failed; restarting", error=repr(consume.exception()))
                await asyncio.sleep(1)

    async def _consume_until_error(self) -> None:
        await ensure_topics(self.bootstrap, self._topics)
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            max_poll_records=self.batch_max,
        )
        try:
            await consumer.start()
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=self.batch_max)
                for tp, records in batches.items():
                    for record in records:
                        await self.apply(record)
                    crash_point("inbox.after_commit")
                    await consumer.commit({TopicPartition(tp.topic, tp.partition): records[-1].offset + 1})
        finally:
            # Bounded: a group leave or a coordinator lookup against a slow or gone broker must not hold up a
            # shutdown; the group forgets an unleft member after its session timeout anyway.
            await close_bounded(consumer.stop(), name=f"consumer {self.group_id}")

    async def apply(self, record: ConsumerRecord) -> None:
        try:
            envelope = Envelope.from_bytes(record.value)
        except Exception as exc:
            await self._dead_letter(record, None, f"undecodable event: {exc!r}")
            return
        base_topic = self._topics.get(record.topic, record.topic)
        handlers = [s.handler for s in self.subscriptions if s.topic == base_topic and s.wants(envelope.type)]
        token = trace_id_var.set(envelope.trace_id)
        try:
            for attempt in range(1, self.handler_attempts_max + 1):
                try:
                    await self._apply_once(envelope, base_topic, handlers)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "event handler failed",
                        event_id=envelope.id,
                        type=envelope.type,
                        attempt=attempt,
                        error=repr(exc),
                    )
                    if attempt == self.handler_attempts_max:
                        await self._dead_letter(record, envelope.id, repr(exc))
                        return
                    await asyncio.sleep(min(RETRY_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), RETRY_BACKOFF_MAX_SECONDS))
        finally:
            trace_id_var.reset(token)

    async def _apply_once(self, envelope: Envelope, topic: str, handlers: list[Handler]) -> None:
        async with self.uow.begin() as tx:
            # New for this consumer, and not applied before consumers were named (a legacy row counts for all).
            legacy = exists().where(inbox.c.consumer == LEGACY_INBOX_CONSUMER, inbox.c.event_id == envelope.id)
            row = select(
                literal(self.consumer_name), literal(envelope.id), literal(topic), literal(envelope.type)
            ).where(~legacy)
            inserted = (
                await tx.conn.execute(
                    pg_insert(inbox)
                    .from_select(["consumer", "event_id", "topic", "event_type"], row)
                    .on_conflict_do_nothing()
                    .returning(inbox.c.event_id)
                )
            ).first()
            if inserted is None:
                duplicate_total.labels(self.service).inc()
                return
            for handler in handlers:
                await handler(tx, envelope)
        applied_total.labels(self.service, envelope.type).inc()

    async def _dead_letter(self, record: ConsumerRecord, event_id: str | None, error: str) -> None:
        async with self.uow.begin() as tx:
            await tx.conn.execute(
                insert(inbox_dead_letter).values(
                    consumer=self.consumer_name,
                    event_id=event_id,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    payload=record.value or b"",
                    error=error[:4000],
                )
            )
        dead_letter_total.labels(self.service).inc()
        log.error("event parked in dead letter", event_id=event_id, error=error)
