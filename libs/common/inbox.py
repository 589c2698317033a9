"""The inbox consumer: each event's effect applied exactly once, whatever Kafka redelivers.

For every fetched batch: one transaction inserts (consumer, event id) of its events into `inbox` (ON CONFLICT
DO NOTHING, one statement) and runs the handlers of the events whose row is new, in fetch order; then it commits.
A batch whose transaction fails is rolled back whole and applied again one event per transaction, with the
retries, outage waits and dead letters below, so a failing event never holds back or takes down the others.
A handler made with `batched` also takes a batch's new events at once (consecutive runs of them, so the order of
effects is the fetch order), and can then write them in one statement (docs/performance.md, fifth pass).
The consumer is the group's name without the topic namespace (`consumer_name`), so two consumer groups of one
service each apply an event once. Offsets are committed to Kafka only after the
database commit, so a crash in between means redelivery, and redelivery means the inbox says "seen".
A handler that keeps failing is retried with backoff, then the record is parked in
`inbox_dead_letter` (nothing is lost; an operator replays it) so one poison event cannot stop the
partition forever. An outage (the database, the broker or a peer service unreachable, or a retryable 503 of a
peer) is not the event's fault: the same record is retried until the dependency is back (bounded by
`outage_wait_seconds_max`), neither parked nor torn down with the consumer (docs/consistency.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Counter
from sqlalchemy import insert, text

from libs.common import tracing
from libs.common.db import Tx, UnitOfWork
from libs.common.errors import Problem
from libs.common.events import Envelope
from libs.common.failures import outage_spec
from libs.common.faults import crash_point
from libs.common.kafka import (
    CONSUMER_TIMEOUT_MS,
    EVENT_TYPE_HEADER,
    EpochWatcher,
    IdleFetchWait,
    KafkaOptions,
    ensure_topics,
    topic_name,
)
from libs.common.logging import get_logger, trace_id_var
from libs.common.outbox_tables import LEGACY_INBOX_CONSUMER, inbox_dead_letter
from libs.common.tasks import close_bounded, raise_if_cancelled, stop_task

log = get_logger("juhe.inbox")

Handler = Callable[[Tx, Envelope], Awaitable[None]]
BatchHandler = Callable[[Tx, Sequence[Envelope]], Awaitable[None]]

applied_total = Counter("juhe_inbox_applied_total", "Events applied", ["service", "type"])
duplicate_total = Counter("juhe_inbox_duplicate_total", "Redelivered events skipped", ["service"])
ignored_total = Counter("juhe_inbox_ignored_total", "Events of a type no subscription wants", ["service"])
dead_letter_total = Counter("juhe_inbox_dead_letter_total", "Events parked after repeated failures", ["service"])
batch_fallback_total = Counter(
    "juhe_inbox_batch_fallback_total", "Fetched batches rolled back and applied one event at a time", ["service"]
)

RETRY_BACKOFF_BASE_SECONDS = 0.2
RETRY_BACKOFF_MAX_SECONDS = 5.0
# How long one record waits for a dependency that is down before the consumer gives up and is rebuilt; below
# aiokafka's max_poll_interval_ms (300 s), past which the group would count this member as gone.
OUTAGE_WAIT_SECONDS_MAX = 240.0
OUTAGE_RETRY_INTERVAL_SECONDS = 1.0

# The inbox rows of a batch of events in one statement, whatever its size (one prepared statement): the events
# new for this consumer and not applied before consumers were named (a legacy row counts for every consumer).
_CLAIM = text(
    "INSERT INTO inbox (consumer, event_id, topic, event_type)"
    " SELECT CAST(:consumer AS text), f.event_id, f.topic, f.event_type"
    " FROM unnest(CAST(:event_ids AS text[]), CAST(:topics AS text[]), CAST(:event_types AS text[]))"
    " AS f (event_id, topic, event_type)"
    " WHERE NOT EXISTS (SELECT 1 FROM inbox AS seen WHERE seen.consumer = :legacy AND seen.event_id = f.event_id)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


def event_type_header(record: ConsumerRecord) -> str | None:
    """The event type the record's `EVENT_TYPE_HEADER` names; None without one (or one that is not UTF-8)."""
    for key, value in record.headers or ():
        if key == EVENT_TYPE_HEADER and isinstance(value, bytes):
            try:
                return value.decode()
            except UnicodeDecodeError:
                return None
    return None


def is_outage(exc: BaseException) -> bool:
    """A failure of a dependency (database, broker, peer service), not of the event: waiting helps."""
    if isinstance(exc, Problem):
        return exc.spec.retryable
    return outage_spec(exc) is not None


class BatchedHandler:
    """A handler that can take several events at once: a `Handler` (one event: `batch` with that event alone),
    whose `batch` the inbox calls with each run of consecutive new events of a fetched batch that it handles.

    Why: a consumer's handler applied once per event runs its statements once per event; given the run it can
    write all of them in one statement (routing's health buckets, the ledger's postings in one writer batch).
    The contract for `batch`: apply the events as if one after the other in the given order, in the inbox's
    transaction `tx`, locking rows in a fixed order (sorted keys), so two replicas' batches never deadlock. A
    failure rolls the whole inbox batch back and each event is applied again alone (`batch` with one event), with
    the per-event retries and dead letters: exactly-once is the inbox row's, as for any handler."""

    def __init__(self, batch: BatchHandler) -> None:
        self.batch = batch

    async def __call__(self, tx: Tx, event: Envelope) -> None:
        await self.batch(tx, (event,))

    def __repr__(self) -> str:
        return f"batched({getattr(self.batch, '__qualname__', self.batch)!r})"


def batched(handler: BatchHandler) -> BatchedHandler:
    """`handler` (which takes a list of events) as a subscription's handler the inbox gives runs of events to."""
    return BatchedHandler(handler)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A fetched record some subscription wants: its decoded event and the handlers to run."""

    record: ConsumerRecord
    envelope: Envelope
    topic: str  # without the namespace
    handlers: list[Handler]


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
        heartbeat_interval_ms: int = 2000,
        fetch_max_wait_ms: int = 500,
        handler_attempts_max: int = 5,
        outage_wait_seconds_max: float = OUTAGE_WAIT_SECONDS_MAX,
        kafka_options: KafkaOptions | None = None,
    ) -> None:
        self.uow = uow
        # Without options: the epoch watcher's (a worker shares one, built from the service's settings).
        self.kafka_options = kafka_options or epoch_watcher.options
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.subscriptions = list(subscriptions)
        self.epoch_watcher = epoch_watcher
        self.topic_namespace = topic_namespace
        self.batch_max = batch_max
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.handler_attempts_max = handler_attempts_max
        self.outage_wait_seconds_max = outage_wait_seconds_max
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
        await ensure_topics(self.bootstrap, self._topics, options=self.kafka_options)
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_poll_records=self.batch_max,
            consumer_timeout_ms=CONSUMER_TIMEOUT_MS,  # the fetch routine's safety poll (libs.common.kafka)
        )
        try:
            await consumer.start()
            idle_wait = IdleFetchWait(consumer, busy_ms=self.fetch_max_wait_ms)  # a longer fetch wait while idle
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=self.batch_max)
                idle_wait.observe(bool(batches))
                if not batches:
                    continue
                await self.apply_batch([record for records in batches.values() for record in records])
                crash_point("inbox.after_commit")
                await consumer.commit(
                    {TopicPartition(tp.topic, tp.partition): records[-1].offset + 1 for tp, records in batches.items()}
                )
        finally:
            await self._drop(consumer)

    async def _drop(self, consumer: AIOKafkaConsumer) -> None:
        """Stop the consumer, bounded, and make sure it is gone from the group.

        Bounded: a group leave or a coordinator lookup against a slow or gone broker must not hold up a
        shutdown. But aiokafka's stop awaits its coordination task *before* stopping the heartbeat task: a stop
        cut short there leaves heartbeats running for a member that never fetches again, and the group keeps
        its partitions assigned to it for good (seen in the fault test: settlement stopped receiving two
        partitions after restarts). So whatever background task of the coordinator survives the stop is
        cancelled and the client's connections closed: the member then stops heartbeating and the group
        reassigns its partitions after the session timeout."""
        name = f"consumer {self.group_id}"
        await close_bounded(consumer.stop(), name=name)
        coordinator = getattr(consumer, "_coordinator", None)
        leftovers = [
            task
            for attr in ("_heartbeat_task", "_coordination_task", "_commit_refresh_task")
            if isinstance(task := getattr(coordinator, attr, None), asyncio.Task) and not task.done()
        ]
        if not leftovers:
            return
        log.warning("consumer stop cut short; stopping its group tasks", group=self.group_id, tasks=len(leftovers))
        for task in leftovers:
            await stop_task(task, name=f"{name} {task.get_name()}")
        await close_bounded(consumer._client.close(), name=f"{name} client")

    async def apply_batch(self, records: Sequence[ConsumerRecord]) -> None:
        """Apply a fetched batch (partitions in any order, each partition's records in offset order): every wanted
        event in one transaction, so a batch costs one BEGIN/COMMIT, one inbox statement and one connection
        instead of that per event (docs/performance.md). If that transaction fails (a handler's error, a deadlock,
        an outage), nothing of it stays and each event is applied alone, as `apply` does, in the same order:
        effects stay exactly once either way, since an event's inbox row commits with its effects."""
        wanted = [w for w in [await self._wanted(record) for record in records] if w is not None]
        if len(wanted) > 1:
            try:
                await self._apply_all_once(wanted)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                batch_fallback_total.labels(self.service).inc()
                log.info("batch rolled back; applying its events one at a time", events=len(wanted), error=repr(exc))
        for one in wanted:
            await self._apply_with_retries(one)

    async def apply(self, record: ConsumerRecord) -> None:
        """Apply one record in its own transaction (retried, waited for or parked as the module says)."""
        wanted = await self._wanted(record)
        if wanted is not None:
            await self._apply_with_retries(wanted)

    async def _wanted(self, record: ConsumerRecord) -> _Wanted | None:
        """The record's event and handlers; None for a record nothing is applied for (parked if undecodable).

        A record whose event-type header (`EVENT_TYPE_HEADER`, written by the outbox relay with every event) names a
        type no subscription of its topic wants is skipped before its JSON is decoded: most records a consumer
        fetches are such (`payment.created` for every consumer of cashier.payments, the payment events for routing's
        and marketing's other groups), and decoding the envelope was most of what a skipped record cost
        (docs/performance.md, "Sixth pass"). A record without the header is decoded and judged by its envelope, as
        before; one with it that some subscription may want is too (the envelope's type decides the handlers)."""
        base_topic = self._topics.get(record.topic, record.topic)
        header_type = event_type_header(record)
        if header_type is not None and not any(
            s.topic == base_topic and s.wants(header_type) for s in self.subscriptions
        ):
            ignored_total.labels(self.service).inc()
            return None
        try:
            envelope = Envelope.from_bytes(record.value)
        except Exception as exc:
            await self._dead_letter(record, None, f"undecodable event: {exc!r}")
            return None
        handlers = [s.handler for s in self.subscriptions if s.topic == base_topic and s.wants(envelope.type)]
        if not handlers:
            # No subscription of this consumer wants this type (`payment.created` for every consumer of
            # cashier.payments): nothing is applied, so there is nothing to make exactly-once — no transaction
            # and no inbox row, which were a third of each consumer's transactions per payment.
            ignored_total.labels(self.service).inc()
            return None
        return _Wanted(record, envelope, base_topic, handlers)

    async def _apply_with_retries(self, wanted: _Wanted) -> None:
        record, envelope = wanted.record, wanted.envelope
        token = trace_id_var.set(envelope.trace_id)
        loop = asyncio.get_running_loop()
        outage_deadline: float | None = None
        try:
            attempt = 0
            while True:
                try:
                    await self._apply_all_once([wanted])
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if is_outage(exc):  # the dependency's fault: wait for it without spending the event's attempts
                        outage_deadline = outage_deadline or loop.time() + self.outage_wait_seconds_max
                        if loop.time() < outage_deadline:  # past it, a "retryable" failure counts like any other
                            log.warning("event handler waits for a dependency", event_id=envelope.id, error=repr(exc))
                            await asyncio.sleep(OUTAGE_RETRY_INTERVAL_SECONDS)
                            continue
                    attempt += 1
                    log.warning(
                        "event handler failed",
                        event_id=envelope.id,
                        type=envelope.type,
                        attempt=attempt,
                        error=repr(exc),
                    )
                    if attempt >= self.handler_attempts_max:
                        await self._dead_letter(record, envelope.id, repr(exc))
                        return
                    await asyncio.sleep(min(RETRY_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), RETRY_BACKOFF_MAX_SECONDS))
        finally:
            trace_id_var.reset(token)

    @contextlib.contextmanager
    def _traced(self, wanted: _Wanted) -> Iterator[None]:
        """The event's trace id in the log context (and on what its handlers publish), and with tracing on a
        CONSUMER span continuing the trace of the transaction that wrote the event (libs.common.tracing)."""
        envelope = wanted.envelope
        token = trace_id_var.set(envelope.trace_id)
        try:
            if not tracing.enabled():
                yield
                return
            parent = envelope.traceparent or tracing.traceparent_of(envelope.trace_id)
            attributes = {"juhe.event.id": envelope.id, "messaging.consumer.group.name": self.consumer_name}
            with tracing.consumer_span(envelope.type, wanted.topic, parent, **attributes):
                yield
        finally:
            trace_id_var.reset(token)

    @contextlib.contextmanager
    def _traced_run(self, run: Sequence[_Wanted]) -> Iterator[None]:
        """`_traced` for each event of a batched handler's run: each event keeps its own CONSUMER span (child of
        its own writer's span, spanning the run); the log context holds the last event's trace id."""
        with contextlib.ExitStack() as stack:
            for wanted in run:
                stack.enter_context(self._traced(wanted))
            yield

    async def _apply_all_once(self, batch: Sequence[_Wanted]) -> None:
        """One transaction: the inbox rows of `batch` in one statement, then the handlers of each event whose row
        is new, in order. An event seen before (by this consumer, or before consumers were named: a legacy row
        counts for all), or twice in the batch, is applied once. A `BatchedHandler` is called once per run of
        consecutive new events it handles (an event another handler takes ends the run), so every handler still
        sees its events in fetch order and after the effects of the events before them."""
        first = {w.envelope.id: w for w in reversed(batch)}  # each event's first occurrence
        applied: list[str] = []
        steps: list[tuple[Handler, list[_Wanted]]] = []
        async with self.uow.begin() as tx:
            result = await tx.conn.execute(
                _CLAIM,
                {
                    "consumer": self.consumer_name,
                    "legacy": LEGACY_INBOX_CONSUMER,
                    "event_ids": [w.envelope.id for w in first.values()],
                    "topics": [w.topic for w in first.values()],
                    "event_types": [w.envelope.type for w in first.values()],
                },
            )
            new = set(result.scalars())
            for wanted in batch:
                if wanted.envelope.id not in new:
                    continue
                new.discard(wanted.envelope.id)
                for handler in wanted.handlers:
                    if isinstance(handler, BatchedHandler) and steps and steps[-1][0] is handler:
                        steps[-1][1].append(wanted)
                    else:
                        steps.append((handler, [wanted]))
                applied.append(wanted.envelope.type)
            for handler, run in steps:
                if isinstance(handler, BatchedHandler):
                    with self._traced_run(run):
                        await handler.batch(tx, [w.envelope for w in run])
                else:
                    with self._traced(run[0]):
                        await handler(tx, run[0].envelope)
        if len(batch) > len(applied):
            duplicate_total.labels(self.service).inc(len(batch) - len(applied))
        for event_type in applied:
            applied_total.labels(self.service, event_type).inc()

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
