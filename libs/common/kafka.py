"""Kafka clients tuned for both the embedded Tansu broker and real Kafka, plus the broker epoch.

Facts from docs/embedded-infra.md that shape this file:
- aiokafka cannot enable idempotence or transactions against Tansu (its InitProducerId v0 is refused), so
  idempotent producers are a setting (`kafka_enable_idempotence`), off by default for the embedded broker
  and on in the production configs (real Kafka). Exactly-once effects come from outbox + inbox either
  way; idempotence only stops a retried produce from writing a duplicate record.
- Topic replication factor and min ISR are settings too: 1/1 on the single embedded broker, 3/2 on a
  production cluster (`KafkaOptions`).
- Creating an existing topic is not an exception: error code 36 in the response. We check it.
- A memory-only broker forgets everything on restart, and a producer with cached metadata gets acks
  for topics that no longer exist. The *broker epoch* detects this: a random marker written as the
  first record of a one-partition topic. A new broker has no marker (or another one), so every relay
  and consumer that sees the epoch change rebuilds its clients and republishes.
- The steady check reads record 0 through one long-lived consumer, paused between checks (`EpochReader`); any
  miss or error falls back to the full read with fresh clients, which also creates the topic and the marker on a
  new broker (docs/performance.md, "Fifth pass").
- While a consumer's fetches come back empty its fetch wait grows (`IdleFetchWait`): on Tansu an idle fetch is
  answered only when its wait runs out, so the wait decides how many requests an idle consumer makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from libs.common.events import TOPIC_PARTITIONS, TOPICS
from libs.common.logging import get_logger
from libs.common.tasks import close_bounded, raise_if_cancelled

log = get_logger("juhe.kafka")

EPOCH_TOPIC = "juhe.broker-epoch"
TOPIC_ALREADY_EXISTS = 36
REQUEST_TIMEOUT_MS = 10_000
# The record header the outbox relay writes with every event: the envelope's `type`, so a consumer can skip an event
# none of its subscriptions wants without decoding its JSON (libs.common.inbox; docs/events.md). A record without it
# (published before the relay wrote it, or by another producer) is decoded and judged by its envelope.
EVENT_TYPE_HEADER = "type"


def topic_name(namespace: str, topic: str) -> str:
    """Tests give each run its own namespace so parallel tests never read each other's events."""
    return f"{namespace}{topic}"


class KafkaSettings(Protocol):
    """The part of `ServiceSettings` these options come from (a Protocol: settings import nothing from here)."""

    kafka_enable_idempotence: bool
    kafka_topic_replication_factor: int
    kafka_topic_min_insync_replicas: int


@dataclass(frozen=True)
class KafkaOptions:
    """How producers and topic creation talk to this cluster; the defaults suit the embedded Tansu broker."""

    enable_idempotence: bool = False
    replication_factor: int = 1
    min_insync_replicas: int = 1

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> KafkaOptions:
        return cls(
            enable_idempotence=settings.kafka_enable_idempotence,
            replication_factor=settings.kafka_topic_replication_factor,
            min_insync_replicas=settings.kafka_topic_min_insync_replicas,
        )


EMBEDDED = KafkaOptions()


def make_producer(bootstrap: str, options: KafkaOptions = EMBEDDED) -> AIOKafkaProducer:
    """A producer that sends at once (`linger_ms=0`): its callers hand it everything they have before awaiting
    (the outbox relay's pass sends all its rows, then awaits their acks), and `send` appends without yielding, so
    a linger only delayed the request; the relay coalesces wake-ups itself (libs.common.outbox, COALESCE_SECONDS)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        enable_idempotence=options.enable_idempotence,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        # Short metadata age: after a broker restart the epoch watcher rebuilds producers anyway.
        metadata_max_age_ms=30_000,
    )


def new_topics(topics: Iterable[str], *, partitions: int, options: KafkaOptions = EMBEDDED) -> list[NewTopic]:
    """The creation requests for `topics` (each once): replication and min ISR from `options`."""
    return [
        NewTopic(
            name,
            partitions,
            options.replication_factor,
            topic_configs={"min.insync.replicas": str(options.min_insync_replicas)},
        )
        for name in dict.fromkeys(topics)
    ]


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], *, partitions: int = TOPIC_PARTITIONS, options: KafkaOptions = EMBEDDED
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are (never re-configured)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await admin.start()  # inside: a start that fails half-way has connections to close too
        response = await admin.create_topics(new_topics(topics, partitions=partitions, options=options))
        for topic_error in getattr(response, "topic_errors", []):
            name, code = topic_error[0], topic_error[1]
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"could not create topic {name}: error {code}")
    finally:
        await close_bounded(admin.close(), name="kafka admin")


async def ensure_platform_topics(bootstrap: str, namespace: str = "", options: KafkaOptions = EMBEDDED) -> None:
    await ensure_topics(bootstrap, [topic_name(namespace, t) for t in TOPICS], options=options)


async def _first_record(bootstrap: str) -> str | None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    try:
        await consumer.start()
        tp = TopicPartition(EPOCH_TOPIC, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            return None
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=5_000, max_records=1)
        records = batch.get(tp) or []
        return records[0].value.decode() if records and records[0].value else None
    finally:
        await close_bounded(consumer.stop(), name="epoch reader")


# A steady check's read of record 0: answered at once by a broker that has it, so a miss means "look closer".
STEADY_READ_TIMEOUT_MS = 2_000
# The kept reader's own fetch wait: after each check aiokafka sends one more fetch (past record 0) before the
# partition is paused again, and on Tansu that fetch is held this long before it is answered and dropped.
STEADY_READER_FETCH_MAX_WAIT_MS = 100
# How often an aiokafka consumer's background fetch routine wakes when nothing happens (its `consumer_timeout_ms`,
# 200 by default). Every event it acts on (a fetch answered, records consumed, a resume, a new assignment) wakes it
# anyway, so the timeout is only a safety poll; at 200 ms it cost an idle consumer ~0.8 ms of CPU a second (measured
# on a paused consumer, docs/performance.md "Fifth pass"), at 5 s nearly nothing.
CONSUMER_TIMEOUT_MS = 5_000


class EpochReader:
    """Record 0 of the epoch topic through one long-lived consumer, paused between reads.

    The full read (`read_or_create_broker_epoch`) opens an admin client and a consumer, four broker connections
    and ~6-7 ms of CPU per check (docs/performance.md); this one sends a seek's fetch on a connection it keeps.
    It never decides an epoch on its own: any miss (no record within `STEADY_READ_TIMEOUT_MS`: a broker that
    forgot the topic, a connection being re-made) or error drops the consumer and returns None, and the caller
    does the full read, which creates the topic and the marker on a new broker. A stale answer cannot come from
    the kept consumer: a seek drops every buffered record, and a broker that restarted has only its own record 0.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._tp = TopicPartition(EPOCH_TOPIC, 0)

    async def read(self) -> str | None:
        """The epoch marker, or None when this cheap read could not tell (the caller then reads in full)."""
        try:
            consumer = self._consumer or await self._open()
            consumer.seek(self._tp, 0)
            consumer.resume(self._tp)
            try:
                batch = await consumer.getmany(self._tp, timeout_ms=STEADY_READ_TIMEOUT_MS, max_records=1)
            finally:
                consumer.pause(self._tp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("steady epoch read failed; reading in full", error=repr(exc))
            batch = {}
        records = batch.get(self._tp) or []
        if records and records[0].offset == 0 and isinstance(value := records[0].value, bytes) and value:
            return value.decode()
        await self.close()
        return None

    async def _open(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            fetch_max_wait_ms=STEADY_READER_FETCH_MAX_WAIT_MS,
            consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.assign([self._tp])
        consumer.pause(self._tp)
        return consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await close_bounded(consumer.stop(), name="epoch reader (kept)")


async def read_or_create_broker_epoch(bootstrap: str, options: KafkaOptions = EMBEDDED) -> str:
    """The epoch of the broker at `bootstrap`; writes one if this broker has none yet.

    Several processes may race to write the first marker; all of them then read record 0, so they
    agree on one epoch.
    """
    await ensure_topics(bootstrap, [EPOCH_TOPIC], partitions=1, options=options)
    epoch = await _first_record(bootstrap)
    if epoch is not None:
        return epoch
    producer = make_producer(bootstrap, options)
    try:
        await producer.start()
        await producer.send_and_wait(EPOCH_TOPIC, uuid.uuid4().hex.encode(), partition=0)
    finally:
        await close_bounded(producer.stop(), name="epoch writer")
    epoch = await _first_record(bootstrap)
    if epoch is None:
        raise RuntimeError("broker epoch marker written but not readable")
    return epoch


# While the broker answers with the same epoch, checks space out to this many times the interval: each check
# opens an admin client and a consumer (~6-7 ms of CPU and four broker connections; docs/performance.md), so
# at every 2 s they were a large part of an idle platform's CPU. A failed check, a new epoch or a `nudge` (a
# relay whose publish failed) brings the interval back to the base at once.
EPOCH_CHECK_BACKOFF_MAX_FACTOR = 4


def next_check_delay(delay: float, *, base: float, steady: bool) -> float:
    """The wait before the next epoch check: doubled after a check that found the same epoch (up to
    `EPOCH_CHECK_BACKOFF_MAX_FACTOR` × `base`), `base` after a failed check or a new epoch."""
    return min(delay * 2, base * EPOCH_CHECK_BACKOFF_MAX_FACTOR) if steady else base


class EpochWatcher:
    """Polls the broker epoch; relays and consumers wait on `changed` to rebuild themselves."""

    def __init__(self, bootstrap: str, *, interval_seconds: float, options: KafkaOptions = EMBEDDED) -> None:
        self.bootstrap = bootstrap
        self.options = options
        self.interval_seconds = interval_seconds
        self.epoch: str | None = None
        self._changed = asyncio.Condition()
        self.version = 0
        self._nudged = asyncio.Event()
        self._wakers: list[asyncio.Event] = []
        self._reader = EpochReader(bootstrap)

    def wake_on_change(self, event: asyncio.Event) -> None:
        """Set `event` whenever the epoch changes (a relay sleeping until its next NOTIFY re-publishes at once)."""
        self._wakers.append(event)

    def nudge(self) -> None:
        """Check again now (something failed against the broker); the spacing starts again from the base."""
        self._nudged.set()

    async def refresh(self) -> str:
        """Check the epoch: the kept reader's record 0 once an epoch is known, else (or when it cannot tell) the
        full read with fresh clients, which creates the marker on a new broker."""
        epoch = await self._reader.read() if self.epoch is not None else None
        if epoch is None:
            epoch = await read_or_create_broker_epoch(self.bootstrap, self.options)
        if epoch != self.epoch:
            if self.epoch is not None:
                log.warning("broker epoch changed", old=self.epoch, new=epoch)
            self.epoch = epoch
            async with self._changed:
                self.version += 1
                self._changed.notify_all()
            for event in self._wakers:
                event.set()
        return epoch

    async def wait_changed(self, seen_version: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.version != seen_version)
            return self.version

    async def wait_ready(self) -> str:
        while self.epoch is None:
            raise_if_cancelled()  # a cancel lost inside a client's close (libs.common.tasks) ends the wait
            with contextlib.suppress(Exception):
                await self.refresh()
            if self.epoch is None:
                await asyncio.sleep(min(self.interval_seconds, 1.0))
        return self.epoch

    async def close(self) -> None:
        """Close the kept reader (`run` does it when it ends)."""
        await self._reader.close()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self.close()

    async def _run(self) -> None:
        delay = self.interval_seconds
        while True:
            raise_if_cancelled()  # a cancel lost inside a client's close (libs.common.tasks) ends the loop
            version = self.version
            try:
                await self.refresh()
                steady = self.version == version
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down: keep the last epoch, try again
                log.warning("broker epoch check failed", error=str(exc))
                steady = False
            delay = next_check_delay(delay, base=self.interval_seconds, steady=steady)
            # asyncio.timeout, not wait_for: 3.11's wait_for can drop a cancel that races the event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._nudged.wait()
                    delay = self.interval_seconds  # nudged: check now, spacing out again from the base
            self._nudged.clear()


# An idle consumer's fetch wait, and after how long without a record it is used. On the embedded Tansu a fetch is
# answered only when its wait runs out (docs/embedded-infra.md), so five consumers at aiokafka's 500 ms were ten
# requests a second to an idle broker, most of its CPU at rest; with Kafka a long poll is answered when a record
# arrives, so there the longer wait costs nothing. On Tansu the first event after a quiet spell waits up to this
# long once; the wait is back to the short one for the fetch that follows it (docs/performance.md, "Fifth pass").
IDLE_FETCH_MAX_WAIT_MS = 3_000
IDLE_FETCH_AFTER_SECONDS = 10.0


class IdleFetchWait:
    """Lengthens a consumer's fetch wait while its fetches come back empty, and shortens it again at the first record.

    `observe` is called after every `getmany`: after `idle_after_seconds` without a record the fetch wait becomes
    `idle_ms`, and the first batch brings it back to `busy_ms` (the consumer's own setting). aiokafka reads the wait
    each time it builds a fetch request (`Fetcher._fetch_max_wait_ms`), so the change applies from the next fetch;
    a fetch already waiting on the broker keeps its wait. Nothing else changes: offsets, commits and the group
    (heartbeats, rebalances) are untouched."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        busy_ms: int,
        idle_ms: int = IDLE_FETCH_MAX_WAIT_MS,
        idle_after_seconds: float = IDLE_FETCH_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self.busy_ms = busy_ms
        self.idle_ms = max(idle_ms, busy_ms)
        self.idle_after_seconds = idle_after_seconds
        self._clock = clock
        self._last_records_at = clock()
        self.idle = False

    def observe(self, got_records: bool) -> None:
        now = self._clock()
        if got_records:
            self._last_records_at = now
            idle = False
        else:
            idle = now - self._last_records_at >= self.idle_after_seconds
        if idle != self.idle:
            self.idle = idle
            fetcher = getattr(self._consumer, "_fetcher", None)  # aiokafka builds it in start()
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = self.idle_ms if idle else self.busy_ms
