"""The outbox relay: publishes committed outbox rows to Kafka, in order per aggregate.

Design, and why it is safe with any number of relay replicas:
- Every row has a `shard` (crc32 of its aggregate key mod 16). A relay publishes a shard only inside
  a transaction holding `pg_try_advisory_xact_lock(shard)`, so at most one relay publishes a shard at
  a time; the others skip it. The lock dies with the transaction, so a killed relay frees its shards.
- Within a shard rows go out in `seq` order, and the transaction waits for the broker's acks before
  marking them published. aiokafka keeps one request in flight per broker, so order is kept.
  Two events of one aggregate are written by transactions that serialise on that aggregate's row,
  so the later event always has the larger `seq` and is never visible before the earlier one.
- A relay that dies after publishing but before its commit leaves the rows unpublished; they are
  sent again and consumers' inboxes drop the repeats.
- Rows stay for `outbox_retention_hours` after publishing. Each row records the broker epoch it went
  to; when the epoch changes (a memory-only broker restarted) the relay recreates topics, rebuilds its
  producer and marks every retained row of another epoch unpublished, so it all goes out again.
- Woken by LISTEN/NOTIFY on insert, and by the epoch watcher on a new broker; a relay woken while busy waits
  `coalesce_seconds` before its pass, so the rows of the transactions that commit meanwhile go in the same pass
  (docs/performance.md, "Seventh pass: the event pipeline"). The polling fallback is
  `poll_interval_seconds` while nothing is sure to wake the relay (its listener is not connected, another relay
  held a shard that had rows, the last pass failed) and LISTENING_FALLBACK_SECONDS while its listener is
  connected: a committed insert always notifies a connected listener, so at rest the relay no longer probes its
  outbox every second (docs/performance.md, "Idle").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import driver_connection
from libs.common.faults import crash_point
from libs.common.kafka import (
    EMBEDDED,
    EVENT_TYPE_HEADER,
    EpochWatcher,
    KafkaOptions,
    ensure_platform_topics,
    make_producer,
    topic_name,
)
from libs.common.logging import get_logger
from libs.common.outbox_tables import NOTIFY_CHANNEL, OUTBOX_SHARD_COUNT, inbox, outbox
from libs.common.tasks import close_bounded, raise_if_cancelled, stop_task
from libs.common.wakeups import Wakeups

log = get_logger("juhe.outbox")

ADVISORY_LOCK_CLASS = 0x4A4F  # "JO": keeps our lock ids apart from anyone else's
RETENTION_SWEEP_BATCH = 5_000
RETENTION_SWEEP_INTERVAL_SECONDS = 30.0
# The longest sleep of a relay whose listener is connected: only a safety net, since every insert notifies.
LISTENING_FALLBACK_SECONDS = 15.0
# How long a woken relay waits before its pass while events keep coming, so that the rows of the transactions
# committing meanwhile go with it. Under load a payment's events come from separate transactions a few ms apart, and
# a pass (five round trips, a produce, the broker's ack) costs about the same whether it carries one row or ten. At
# 200 single-event transactions a second (in-process, docs/performance.md "Seventh pass"), passes carry 1.7-2.0 rows
# with the producer's old 5 ms linger and 3.0 with this wait (1.0 with neither); the producer no longer lingers
# (libs.common.kafka.make_producer: a pass hands it all its rows at once).
COALESCE_SECONDS = 0.010
# The wait applies only while the relay is busy: when its last pass that sent rows was this recent. The first event
# after a quiet spell is passed at once, so at rest an event waits nothing.
COALESCE_BUSY_SECONDS = 1.0

# A pass's statements, plain SQL on the connection's asyncpg (each prepared once per connection by its cache).
# The shards with at least one unpublished row (one index probe per shard, however long the backlog), each with
# whether this transaction got its advisory lock: the lock is tried only for a shard that passed the probe (a
# row's select list is computed only for the rows its WHERE kept), and a try never waits, so no lock order.
_LOCK_PENDING = (
    "SELECT s, pg_try_advisory_xact_lock($1::integer, s) AS locked FROM generate_series(0, $2::integer - 1) AS s"
    " WHERE EXISTS (SELECT 1 FROM outbox WHERE shard = s AND published_at IS NULL)"
)
# Up to $2 unpublished rows of each locked shard, in seq order (per shard, which is all the order there is).
_READ_LOCKED = (
    "SELECT o.seq, o.shard, o.topic, o.key, o.payload, o.event_type FROM unnest($1::smallint[]) AS locked (shard)"
    " CROSS JOIN LATERAL (SELECT seq, shard, topic, key, payload, event_type FROM outbox"
    " WHERE outbox.shard = locked.shard AND published_at IS NULL ORDER BY seq LIMIT $2) AS o ORDER BY o.seq"
)
_MARK_SENT = "UPDATE outbox SET published_at = $1, broker_epoch = $2 WHERE seq = ANY($3::bigint[])"

published_total = Counter("juhe_outbox_published_total", "Outbox rows published", ["service"])
republished_total = Counter(
    "juhe_outbox_republished_total", "Outbox rows reset after a broker epoch change", ["service"]
)
unpublished_gauge = Gauge("juhe_outbox_unpublished", "Outbox rows waiting to be published", ["service"])


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        service: str,
        bootstrap: str,
        epoch_watcher: EpochWatcher,
        topic_namespace: str = "",
        batch_max: int = 500,
        poll_interval_seconds: float = 1.0,
        retention_hours: float = 72.0,
        kafka_options: KafkaOptions = EMBEDDED,
        wakeups: Wakeups | None = None,
        coalesce_seconds: float = COALESCE_SECONDS,
    ) -> None:
        self.engine = engine
        self.kafka_options = kafka_options
        self.service = service
        self.bootstrap = bootstrap
        self.epoch_watcher = epoch_watcher
        self.topic_namespace = topic_namespace
        self.batch_max = batch_max
        self.poll_interval_seconds = poll_interval_seconds
        self.coalesce_seconds = coalesce_seconds
        self.retention = timedelta(hours=retention_hours)
        self._wake = asyncio.Event()
        epoch_watcher.wake_on_change(self._wake)  # a new broker's re-publish starts at once, not at the fallback
        # The process's one LISTEN connection (libs.common.wakeups); a relay built alone runs a hub of its own.
        self._own_wakeups = wakeups is None
        self.wakeups = wakeups or Wakeups(engine)
        self.wakeups.watch(NOTIFY_CHANNEL, self._wake)
        self._shard_held_elsewhere = False
        self._producer: AIOKafkaProducer | None = None
        self._epoch: str | None = None
        self._epoch_version = -1
        self._next_sweep_at = 0.0
        self._sent_at = float("-inf")  # the loop's time of the last pass that sent rows (`COALESCE_BUSY_SECONDS`)

    async def run(self) -> None:
        """Publish until cancelled. Stopping is bounded (libs.common.tasks): a cancel that a Kafka client's
        close swallowed still ends the loop, the listener and the producer are stopped with a bound."""
        listener = (
            asyncio.create_task(self.wakeups.run(), name=f"{self.service}-outbox-listen") if self._own_wakeups else None
        )
        try:
            while True:
                raise_if_cancelled()
                try:
                    await self._sync_epoch()
                    busy = await self.publish_once()
                    await self._sweep_retention()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("outbox relay pass failed", error=repr(exc))
                    self.epoch_watcher.nudge()  # a restarted broker is found at once, not at the next check
                    await self._drop_producer()
                    await asyncio.sleep(self.poll_interval_seconds)
                    continue  # retried after the short interval, never after the listening fallback
                if not busy:
                    # asyncio.timeout, not wait_for: 3.11's wait_for returns normally (and drops the cancel)
                    # when the event is set at the moment this task is cancelled.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.idle_wait_seconds()):
                            await self._wake.wait()
                    if self._wake.is_set() and self._busy():
                        # The rows committed during this wait go in the pass too (their wake-ups are cleared below).
                        await asyncio.sleep(self.coalesce_seconds)
                    self._wake.clear()
        finally:
            if listener is not None:
                await stop_task(listener, name=listener.get_name())
            await self._drop_producer()

    def _busy(self) -> bool:
        """Whether a wake-up waits `coalesce_seconds`: only while rows keep coming (see COALESCE_BUSY_SECONDS)."""
        now = asyncio.get_running_loop().time()
        return self.coalesce_seconds > 0 and now - self._sent_at < COALESCE_BUSY_SECONDS

    def idle_wait_seconds(self) -> float:
        """How long an idle relay waits for a wake-up before it looks at its outbox anyway."""
        if self.wakeups.listening and not self._shard_held_elsewhere:
            return max(self.poll_interval_seconds, LISTENING_FALLBACK_SECONDS)
        return self.poll_interval_seconds

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await close_bounded(producer.stop(), name=f"{self.service} outbox producer")

    async def _sync_epoch(self) -> None:
        """On a new broker: recreate topics, rebuild the producer, re-publish retained rows."""
        epoch = await self.epoch_watcher.wait_ready()
        if self.epoch_watcher.version == self._epoch_version and self._producer is not None:
            return
        self._epoch_version = self.epoch_watcher.version
        await self._drop_producer()
        await ensure_platform_topics(self.bootstrap, self.topic_namespace, self.kafka_options)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.published_at.is_not(None), outbox.c.broker_epoch.is_distinct_from(epoch))
                .values(published_at=None, broker_epoch=None)
            )
        if result.rowcount:
            republished_total.labels(self.service).inc(result.rowcount)
            log.warning("re-publishing retained events for a new broker", rows=result.rowcount, epoch=epoch)
        self._epoch = epoch
        producer = make_producer(self.bootstrap, self.kafka_options)
        await producer.start()
        self._producer = producer

    async def publish_once(self) -> bool:
        """One pass: every shard that has unpublished rows and whose lock this relay gets, in one transaction. True
        when some shard had a full batch (more may be waiting).

        A pass is at most five round trips on the connection's asyncpg itself (`driver_connection`), however many
        shards it sends: BEGIN; the shards with rows locked in one statement (`_LOCK_PENDING`: an `EXISTS` probe of
        the `outbox_unpublished` partial index per shard, then `pg_try_advisory_xact_lock` of those only); their
        rows (`_READ_LOCKED`, each shard's in `seq` order, after the locks); the produce, awaited until the broker
        has acked every row; the mark (`_MARK_SENT`); COMMIT. Before, each shard with rows was a transaction of its
        own (BEGIN, lock, read, mark, COMMIT through SQLAlchemy) after a probe, and a payment's events are on
        several shards (docs/performance.md, "Sixth pass"). The rows are read by a statement after the one that
        took the locks, so its snapshot sees every row another relay marked before it released a shard. A row
        committed after the probe is not missed: its NOTIFY sets the wake event, and the loop passes again.
        """
        producer = self._producer
        assert producer is not None and self._epoch is not None
        async with driver_connection(self.engine) as conn, conn.transaction():
            shards = await conn.fetch(_LOCK_PENDING, ADVISORY_LOCK_CLASS, OUTBOX_SHARD_COUNT)
            locked = [int(row["s"]) for row in shards if row["locked"]]
            # Another relay holds a shard with rows: if it dies before its commit, no new NOTIFY comes for them.
            self._shard_held_elsewhere = len(locked) < len(shards)
            if not locked:
                return False
            rows = await conn.fetch(_READ_LOCKED, locked, self.batch_max)
            if not rows:
                return False
            futures = [
                await producer.send(
                    topic_name(self.topic_namespace, row["topic"]),
                    value=row["payload"],
                    key=row["key"].encode(),
                    headers=[(EVENT_TYPE_HEADER, row["event_type"].encode())],
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            crash_point("outbox.after_publish")
            await conn.execute(_MARK_SENT, datetime.now(UTC), self._epoch, [row["seq"] for row in rows])
        published_total.labels(self.service).inc(len(rows))
        self._sent_at = asyncio.get_running_loop().time()
        return max(collections.Counter(row["shard"] for row in rows).values()) >= self.batch_max

    async def _sweep_retention(self) -> None:
        """Delete published rows (and inbox rows) past retention, a bounded batch at a time."""
        now = asyncio.get_running_loop().time()
        if now < self._next_sweep_at:
            return
        self._next_sweep_at = now + RETENTION_SWEEP_INTERVAL_SECONDS
        cutoff = datetime.now(UTC) - self.retention
        async with self.engine.begin() as conn:
            old = (
                select(outbox.c.seq)
                .where(outbox.c.published_at.is_not(None), outbox.c.published_at < cutoff)
                .limit(RETENTION_SWEEP_BATCH)
                .scalar_subquery()
            )
            await conn.execute(delete(outbox).where(outbox.c.seq.in_(old)))
            # Inbox rows must outlive any re-publish of the same event: keep them twice as long.
            inbox_cutoff = datetime.now(UTC) - 2 * self.retention
            old_inbox = (
                select(inbox.c.consumer, inbox.c.event_id)
                .where(inbox.c.received_at < inbox_cutoff)
                .limit(RETENTION_SWEEP_BATCH)
            )
            await conn.execute(delete(inbox).where(tuple_(inbox.c.consumer, inbox.c.event_id).in_(old_inbox)))
            pending = (await conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()
        unpublished_gauge.labels(self.service).set(pending)
