"""The ledger's write path: a batcher that turns many concurrent requests into one transaction per batch.

Why: a platform fee account or a channel clearing account is touched by every payment. Locking it per
transfer (the classic design) makes every payment of the platform wait in one queue of commits. Here:

1. `submit(command)` puts the command on a bounded queue and awaits its outcome.
2. One writer task per process takes what is queued (up to `batch_transfers_max` transfers) and writes
   it in ONE database transaction (`write_batch`, the locked path):
   - locks the pending transfers being posted/voided, then every touched account, each set sorted by id
     (`SELECT … ORDER BY id FOR UPDATE`): one fixed global lock order, so another replica's writer, the
     expiry task or an account freeze can interleave but never deadlock, and nothing relies on this
     process being the only writer; the same statement reads the batch's idempotency keys and the clock;
   - hands the locked rows to the pure `BatchEngine`, which applies the commands in submission order
     (limits exact per transfer, a failing transfer rejected alone, linked groups all-or-nothing);
   - writes everything with one statement (`_WRITE_SQL`: transfers, entries, one counter update per
     touched account, compare-and-set of finished holds, outbox rows) and commits.
3. Pipelining (`_prepare` / `_commit_prepared`): while batch k is in the database, batch k+1 is read
   without locks and computed on top of k's in-memory result; then it takes the same locks and compares
   every locked row with what it assumed. Equal → its precomputed statement goes in; different (another
   replica wrote, k failed or was retried) → it is recomputed on the locked path. The comparison under
   lock, not the in-memory chain, is what makes it correct.
4. A unique violation on `(source, idempotency_key)` (another replica stored the same key first) or a
   deadlock / lock timeout rolls the batch back and runs it again; on the retry the winner's transfer is
   found and answered as a replay.

Throughput therefore grows with load instead of collapsing on the hot row lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter, Histogram

from libs.common.db import UnitOfWork, shard_of
from libs.common.failures import outage_spec
from libs.common.ids import new_id
from libs.common.logging import current_trace_id, get_logger
from libs.common.tasks import stop_task
from services.ledger.domain import errors
from services.ledger.domain.accounts import Account
from services.ledger.domain.engine import (
    BatchEffects,
    BatchEngine,
    Command,
    CreateTransfers,
    Event,
    Outcome,
)
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import Transfer
from services.ledger.events import TRANSFERS_TOPIC
from services.ledger.store.codec import (
    TRANSFER_COLUMNS,
    WRITE_ACCOUNT_COLUMNS,
    account_from_row,
    postings_to_json,
    transfer_from_row,
)

log = get_logger("juhe.ledger.writer")

batches_total = Counter(
    "juhe_ledger_batches_total", "Ledger write batches committed", ["path"]
)  # path: locked | pipelined
pipeline_recomputed_total = Counter(
    "juhe_ledger_pipeline_recomputed_total", "Pipelined batches whose locked rows differed and were recomputed"
)
batch_transfers = Histogram(
    "juhe_ledger_batch_transfers",
    "Transfers per write batch",
    buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048),
)

_RETRYABLE = (
    asyncpg.UniqueViolationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,
)


def command_size(command: Command) -> int:
    return len(command.requests) if isinstance(command, CreateTransfers) else 1


# The whole batch in one statement (one round trip): data-modifying CTEs, column arrays via unnest.
# The whole batch in one statement (one round trip): data-modifying CTEs over column arrays (unnest).
_WRITE_CTES = """
new_transfers AS (
  INSERT INTO transfers (id, source, idempotency_key, body_hash, status, pending, postings, reference,
                         corrects_transfer_id, metadata, created_at, timeout_at, finalized_at)
  SELECT v.id, v.source, v.key, v.hash, v.status, v.pending, v.postings::jsonb, v.reference, v.corrects,
         v.metadata::jsonb, $1, v.timeout_at, v.finalized_at
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[], $9::text[],
                $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[])
         AS v(id, source, key, hash, status, pending, postings, reference, corrects, metadata, timeout_at,
              finalized_at)
   WHERE {gate}
), new_entries AS (
  INSERT INTO entries (account_id, transfer_id, kind, direction, posted_delta_minor, pending_delta_minor,
                       currency, debits_posted, credits_posted, debits_pending, credits_pending, created_at)
  SELECT v.*, $1
    FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[], $19::bigint[], $20::text[],
                $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[])
         AS v(account_id, transfer_id, kind, direction, posted, pending, currency, dp, cp, dq, cq)
   WHERE {gate}
), balances AS (
  UPDATE accounts AS a
     SET debits_posted = v.dp, credits_posted = v.cp, debits_pending = v.dq, credits_pending = v.cq,
         updated_at = $1
    FROM unnest($25::text[], $26::bigint[], $27::bigint[], $28::bigint[], $29::bigint[]) AS v(id, dp, cp, dq, cq)
   WHERE a.id = v.id AND {gate}
), finished AS (
  UPDATE transfers AS t
     SET status = v.status, finalized_at = v.finalized_at, postings = v.postings::jsonb
    FROM unnest($30::text[], $31::text[], $32::timestamptz[], $33::text[]) AS v(id, status, finalized_at, postings)
   WHERE t.id = v.id AND t.status = 'pending' AND {gate}
  RETURNING 1
), events AS (
  INSERT INTO outbox (event_id, topic, key, shard, event_type, payload)
  SELECT * FROM unnest($34::text[], $35::text[], $36::text[], $37::smallint[], $38::text[], $39::bytea[])
   WHERE {gate}
)"""

# Locked path: the whole batch in one statement (one round trip) inside the batch's transaction, after the
# locks were taken and the engine ran: data-modifying CTEs over column arrays (unnest).
_WRITE_SQL = "WITH " + _WRITE_CTES.format(gate="true") + "\nSELECT count(*) FROM finished"

# Pipelined path: lock, verify and write in ONE statement that is its own transaction (autocommit), so a
# precomputed batch costs one round trip. `locked` takes the row locks in id order; `ok` compares every
# locked row with what the batch assumed ($40…$49); every write is gated on `ok`, so a mismatch writes
# nothing and answers false (the batch is then recomputed on the locked path).
_OPTIMISTIC_SQL = (
    """WITH locked AS (
  SELECT id, status, debits_must_not_exceed_credits AS d, credits_must_not_exceed_debits AS c,
         credit_limit_minor, currency, debits_posted, credits_posted, debits_pending, credits_pending
    FROM accounts WHERE id = ANY($40::text[]) ORDER BY id FOR UPDATE
), ok AS (
  SELECT count(*) = cardinality($40::text[]) AS ok
    FROM locked l
    JOIN unnest($40::text[], $41::text[], $42::bool[], $43::bool[], $44::bigint[], $45::text[], $46::bigint[],
                $47::bigint[], $48::bigint[], $49::bigint[]) AS e(id, status, d, c, lim, currency, dp, cp, dq, cq)
      ON e.id = l.id
   WHERE l.status = e.status AND l.d = e.d AND l.c = e.c AND l.credit_limit_minor = e.lim
     AND l.currency = e.currency AND l.debits_posted = e.dp AND l.credits_posted = e.cp
     AND l.debits_pending = e.dq AND l.credits_pending = e.cq
), """
    + _WRITE_CTES.format(gate="(SELECT ok FROM ok)")
    + "\nSELECT ok FROM ok"
)


def envelope_bytes(
    *, event_id: str, type: str, source: str, subject: str, data: dict[str, Any], time: str, trace_id: str | None
) -> bytes:
    return envelope_text(
        event_id=event_id, type=type, source=source, subject=subject, data=data, time=time, trace_id=trace_id
    ).encode()


def envelope_text(
    *, event_id: str, type: str, source: str, subject: str, data: dict[str, Any], time: str, trace_id: str | None
) -> str:
    """Byte-for-byte what `libs.common.events.Envelope.to_bytes()` produces (same keys, same order).

    Why not `tx.publish`: `Envelope.to_bytes` deep-copies `data` through `dataclasses.asdict`, which cost
    more than everything else per transfer at thousands of transfers per second. The outbox rows are
    the same table, the same transaction, the same format (a unit test pins the equality).
    """
    return json.dumps(
        {
            "type": type,
            "source": source,
            "subject": subject,
            "data": data,
            "id": event_id,
            "time": time,
            "data_version": 1,
            "trace_id": trace_id,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(slots=True)
class _Item:
    command: Command
    future: asyncio.Future[list[Outcome]]
    trace_id: str | None


@dataclass(slots=True)
class _Chain:
    """What a batch leaves behind in memory, for the next batch to compute on before this one commits."""

    accounts: dict[str, Account]  # the accounts it touched, as it left them (never mutated afterwards)
    keys: dict[tuple[str, str], Transfer]  # the transfers it created, by idempotency key
    now: datetime


@dataclass(slots=True)
class _Prepared:
    """A batch computed optimistically: its results, its write, and what it assumed."""

    results: list[list[Outcome]]
    write_arguments: list[Any]
    finished_expected: int
    assumed: dict[str, Account]  # account id → a copy of the row as the batch read it (before computing)
    chain: _Chain


class LedgerWriter:
    """One per process. Correct with any number of processes; fast because it batches and pipelines.

    Pipelining: while batch k is in the database (write + commit: the lock-holding, fsync-bound part),
    batch k+1 is read without locks and computed on top of k's in-memory result (`_Chain`). Then it locks
    its accounts and compares them with what it assumed; equal → its precomputed write goes in as is,
    different (another replica wrote, k failed or was retried) → it is recomputed under the locks. So the
    chain only saves time; the locked comparison is what guarantees correctness.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        batch_transfers_max: int = 2000,
        queue_transfers_max: int = 50_000,
        batch_attempts_max: int = 5,
        lock_timeout_seconds: float = 10.0,
    ) -> None:
        self.uow = uow
        self.batch_transfers_max = batch_transfers_max
        self.queue_transfers_max = queue_transfers_max
        self.batch_attempts_max = batch_attempts_max
        self.lock_timeout_seconds = lock_timeout_seconds
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._queued_transfers = 0
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0
        self._dsn = uow.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connections: dict[str, asyncpg.Connection] = {}
        self._connection_locks: dict[str, asyncio.Lock] = {}
        self.optimistic_commits = 0  # batches computed before the previous one committed, verified, written
        self.optimistic_fallbacks = 0  # …whose locked rows differed, recomputed under the locks

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task, name="ledger writer")  # bounded, re-cancelled (libs.common.tasks)
            self._task = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(LedgerError(errors.LEDGER_BUSY, "the ledger writer stopped"))
        for db in self._connections.values():
            with contextlib.suppress(Exception):
                await db.close(timeout=2)
        self._connections.clear()

    # --- API -----------------------------------------------------------------------------------------
    async def submit(self, command: Command) -> list[Outcome]:
        """Queues one command; returns one outcome per transfer of it once its batch has committed."""
        size = command_size(command)
        if self._queued_transfers + size > self.queue_transfers_max:
            raise LedgerError(errors.LEDGER_BUSY, "write queue full", retry_after_seconds=1)
        self.start()
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queued_transfers += size
        self._queue.put_nowait(_Item(command, future, current_trace_id()))
        return await future

    # --- the writer task -----------------------------------------------------------------------------
    async def _collect(self, *, pipeline_idle: bool) -> list[_Item]:
        """Takes what is queued, up to `batch_transfers_max` transfers.

        When nothing is in the database (`pipeline_idle`) and enough is queued, it takes only half: the
        other half then becomes the next batch, computed while this one is being written and committed,
        so the database and Python work at the same time instead of in turn.
        """
        batch = [await self._queue.get()]
        size = command_size(batch[0].command)
        size_max = self.batch_transfers_max
        if pipeline_idle and self._queued_transfers >= PIPELINE_SPLIT_TRANSFERS_MIN:
            size_max = min(size_max, (self._queued_transfers + 1) // 2)
        while not self._queue.empty() and size < size_max:
            item = self._queue.get_nowait()
            batch.append(item)
            size += command_size(item.command)
        self._queued_transfers -= size
        return batch

    async def _run(self) -> None:
        """Keeps at most two batches going: one in the database, the next one computing."""
        inflight: asyncio.Task[bool] | None = None
        chain: _Chain | None = None
        running: set[asyncio.Task[bool]] = set()
        try:
            while True:
                idle = inflight is None or inflight.done()
                batch = await self._collect(pipeline_idle=idle)
                previous = inflight if inflight is not None and not inflight.done() else None
                computed: asyncio.Future[_Chain | None] = asyncio.get_running_loop().create_future()
                inflight = asyncio.create_task(
                    self._process(batch, chain if previous is not None else None, previous, computed)
                )
                running.add(inflight)
                inflight.add_done_callback(running.discard)
                chain = await computed
                if previous is not None:  # depth 2: the batch before the one just started must be done
                    await asyncio.wait([previous])
        except asyncio.CancelledError:
            for task in list(running):
                task.cancel()
            for task in list(running):
                with contextlib.suppress(BaseException):
                    await task
            raise

    async def _process(
        self,
        batch: list[_Item],
        chain: _Chain | None,
        previous: asyncio.Task[bool] | None,
        computed: asyncio.Future[_Chain | None],
    ) -> bool:
        """Writes one batch and answers its callers. Returns True when it committed exactly as computed
        first (so a batch chained on it may trust its in-memory result)."""
        commands = [item.command for item in batch]
        trace_ids = [item.trace_id for item in batch]
        exact = False
        try:
            prepared = None
            if chain is not None and all(isinstance(c, CreateTransfers) for c in commands):
                prepared = await self._prepare(commands, trace_ids, chain)
            if prepared is not None:
                computed.set_result(prepared.chain)
                previous_exact = previous is None or await _exact(previous)
                results = await self._commit_prepared(prepared) if previous_exact else None
                exact = results is not None
            else:
                results = None
            if results is None:
                attempts: list[_Chain] = []

                def on_computed(c: _Chain) -> None:
                    attempts.append(c)
                    if not computed.done():
                        computed.set_result(c)

                if previous is not None:
                    await asyncio.wait([previous])
                results = await self.write_batch(commands, trace_ids=trace_ids, on_computed=on_computed)
                exact = len(attempts) == 1 and not prepared
        except asyncio.CancelledError:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(LedgerError(errors.LEDGER_BUSY, "the ledger writer stopped"))
            raise
        except Exception as exc:
            if len(batch) > 1 and outage_spec(exc) is None:
                # One command's data failed the batch (text the database refuses, a bug in one item): the
                # transaction wrote nothing, so write the batch again in halves until the culprit stands
                # alone; every other caller gets its own outcome, the culprit its own error.
                log.warning("ledger batch failed; isolating the failing command", commands=len(batch), error=repr(exc))
                if previous is not None:
                    await asyncio.wait([previous])
                await self._write_isolating(batch)
                return False
            # The database is down (or a lone command failed): every caller of the batch gets the error.
            log.exception("ledger batch failed", commands=len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return False
        finally:
            if not computed.done():
                computed.set_result(None)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
        return exact

    async def _write_isolating(self, batch: list[_Item]) -> None:
        """Writes `batch` on the locked path, splitting it in halves on failure (a failed transaction wrote
        nothing, so a retry is safe): about 2·log2(n) transactions find one bad command among n, and each
        caller's future gets its own result or its own error. An outage stops the splitting: everyone left
        gets it."""
        try:
            results = await self.write_batch([i.command for i in batch], trace_ids=[i.trace_id for i in batch])
        except Exception as exc:
            if len(batch) == 1 or outage_spec(exc) is not None:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            half = len(batch) // 2
            await self._write_isolating(batch[:half])
            await self._write_isolating(batch[half:])
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _prepare(
        self, commands: Sequence[Command], trace_ids: Sequence[str | None], chain: _Chain
    ) -> _Prepared | None:
        """Optimistic stage: read without locks, overlay the in-flight batch's result, compute."""
        keys: dict[tuple[str, str], None] = {}
        account_ids: set[str] = set()
        for command in commands:
            assert isinstance(command, CreateTransfers)
            for r in command.requests:
                if r.corrects_transfer_id:
                    return None  # needs the committed transfer table; rare: take the locked path
                keys[(r.source, r.idempotency_key)] = None
                account_ids.update(p.account_id for p in r.postings)
        async with self._connection("read") as db:
            known_keys = await _transfers_by_keys(db, list(keys))
            rows = await db.fetch(
                f"SELECT {WRITE_ACCOUNT_COLUMNS}, clock_timestamp() AS read_at"
                " FROM accounts WHERE id = ANY($1::text[])",
                sorted(account_ids - chain.accounts.keys()),
            )
        accounts = {r["id"]: account_from_row(r, metadata=False) for r in rows}
        for account_id in account_ids & chain.accounts.keys():
            accounts[account_id] = chain.accounts[account_id].copy()
        for key in keys:
            if key in chain.keys:
                known_keys[key] = chain.keys[key]
        now = max([chain.now, *(r["read_at"] for r in rows)])
        assumed = {a.id: a.copy() for a in accounts.values()}
        results, effects, event_traces = self._compute(commands, trace_ids, accounts, {}, known_keys, set(), now)
        return _Prepared(
            results=results,
            write_arguments=self._write_arguments(effects, accounts, event_traces, now),
            finished_expected=0,
            assumed=assumed,
            chain=_chain_of(effects, accounts, now),
        )

    async def _commit_prepared(self, prepared: _Prepared) -> list[list[Outcome]] | None:
        """Locked stage of an optimistic batch, in one self-committing statement: None (nothing written)
        when a locked row differs from what the batch assumed."""
        accounts = [prepared.assumed[a] for a in sorted(prepared.assumed)]
        expected = [
            [a.id for a in accounts],
            [str(a.status) for a in accounts],
            [a.flags.debits_must_not_exceed_credits for a in accounts],
            [a.flags.credits_must_not_exceed_debits for a in accounts],
            [a.credit_limit_minor for a in accounts],
            [a.currency for a in accounts],
            [a.balances.debits_posted for a in accounts],
            [a.balances.credits_posted for a in accounts],
            [a.balances.debits_pending for a in accounts],
            [a.balances.credits_pending for a in accounts],
        ]
        try:
            async with self._connection("write") as db:
                ok = await db.fetchval(_OPTIMISTIC_SQL, *prepared.write_arguments, *expected)
        except _RETRYABLE:
            ok = False
        if not ok:
            self.optimistic_fallbacks += 1
            pipeline_recomputed_total.inc()
            return None
        self.batches_written += 1
        self.optimistic_commits += 1
        batches_total.labels("pipelined").inc()
        batch_transfers.observe(sum(len(r) for r in prepared.results))
        return prepared.results

    async def write_batch(
        self,
        commands: Sequence[Command],
        *,
        trace_ids: Sequence[str | None] | None = None,
        on_computed: Callable[[_Chain], None] | None = None,
    ) -> list[list[Outcome]]:
        """Locked path: writes one batch, retrying the whole transaction on races another writer causes."""
        for attempt in range(1, self.batch_attempts_max + 1):
            try:
                async with self._transaction() as db:
                    results = await self._write(db, commands, trace_ids or [None] * len(commands), on_computed)
                self.batches_written += 1
                batches_total.labels("locked").inc()
                batch_transfers.observe(sum(command_size(c) for c in commands))
                return results
            except _RETRYABLE as exc:
                if attempt == self.batch_attempts_max:
                    raise
                log.info("ledger batch retried", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction on the writer's own connection, driven with the raw driver.

        Why not `uow.begin()`: a pool checkout (ping, reset) plus BEGIN plus the lock timeout cost four
        round trips per batch, and under CPU contention each costs milliseconds during which the hot
        account's lock is held or awaited. Here `BEGIN` and the lock timeout are one message. The outbox
        rows are written by the same transaction (`_WRITE_SQL`): still one commit point per batch.
        """
        async with self._connection("write") as db:
            await db.execute(f"BEGIN; SET LOCAL lock_timeout = '{int(self.lock_timeout_seconds * 1000)}ms'")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(Exception):
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def _connection(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        """The writer's own connections ("write": its transactions, "read": optimistic reads), one user
        at a time. Kept open rather than checked out of the service pool per batch: a checkout costs a
        ping and a reset, two round trips, on every batch."""
        async with self._connection_locks.setdefault(name, asyncio.Lock()):
            db = self._connections.get(name)
            if db is None or db.is_closed():
                db = self._connections[name] = await asyncpg.connect(
                    self._dsn,
                    statement_cache_size=256,
                    # For the self-committing pipelined statement, which has no transaction to SET LOCAL in.
                    server_settings={"lock_timeout": str(int(self.lock_timeout_seconds * 1000))},
                )
            try:
                yield db
            except BaseException:
                if db.is_in_transaction() or db.is_closed():  # broken: let the next batch reconnect
                    self._connections.pop(name, None)
                    with contextlib.suppress(Exception):
                        await db.close(timeout=1)
                raise

    def _compute(
        self,
        commands: Sequence[Command],
        trace_ids: Sequence[str | None],
        accounts: dict[str, Account],
        pending: dict[str, Transfer],
        known_keys: dict[tuple[str, str], Transfer],
        known_ids: set[str],
        now: datetime,
    ) -> tuple[list[list[Outcome]], BatchEffects, list[str | None]]:
        engine = BatchEngine(
            accounts=accounts,
            transfers=pending,
            known_keys=known_keys,
            known_transfer_ids=known_ids | set(pending),
            now=now,
            new_transfer_id=lambda: new_id("tr"),
        )
        results: list[list[Outcome]] = []
        event_traces: list[str | None] = []  # each event carries the trace id of the request behind it
        for command, trace_id in zip(commands, trace_ids, strict=True):
            results.append(engine.apply(command))
            event_traces.extend([trace_id] * (len(engine.effects.events) - len(event_traces)))
        return results, engine.effects, event_traces

    async def _write(
        self,
        db: asyncpg.Connection,
        commands: Sequence[Command],
        trace_ids: Sequence[str | None],
        on_computed: Callable[[_Chain], None] | None = None,
    ) -> list[list[Outcome]]:
        """Locked path: lock (transfers, then accounts), compute, write, inside the caller's transaction."""
        keys: dict[tuple[str, str], None] = {}
        corrects: set[str] = set()
        finishing: set[str] = set()
        account_ids: set[str] = set()
        for command in commands:
            if isinstance(command, CreateTransfers):
                for r in command.requests:
                    keys[(r.source, r.idempotency_key)] = None
                    if r.corrects_transfer_id:
                        corrects.add(r.corrects_transfer_id)
                    account_ids.update(p.account_id for p in r.postings)
            else:
                finishing.add(command.transfer_id)

        pending = await _lock_transfers(db, sorted(finishing))
        for t in pending.values():
            account_ids.update(p.account_id for p in t.postings)
        accounts, now, known_keys = await _lock_accounts(db, sorted(account_ids), list(keys))
        known_ids = await _existing_transfer_ids(db, sorted(corrects)) if corrects else set()

        results, effects, event_traces = self._compute(
            commands, trace_ids, accounts, pending, known_keys, known_ids, now
        )
        if on_computed is not None:
            on_computed(_chain_of(effects, accounts, now))
        if effects.entries or effects.finalized_transfers:
            finished = await db.fetchval(_WRITE_SQL, *self._write_arguments(effects, accounts, event_traces, now))
            expected = len({t.id for t in effects.finalized_transfers})
            if finished != expected:  # compare-and-set on status; we hold the row locks
                raise RuntimeError(f"pending transfers changed under lock: {finished} != {expected}")
        return results

    def _write_arguments(
        self,
        effects: BatchEffects,
        accounts: dict[str, Account],
        event_traces: list[str | None],
        now: datetime,
    ) -> list[Any]:
        """Column arrays for `_WRITE_SQL`: the whole batch in one statement, one round trip."""
        new = effects.new_transfers
        entries = effects.entries
        finished = list({t.id: t for t in effects.finalized_transfers}.values())
        touched = effects.touched_account_ids()
        balances = [accounts[a].balances for a in touched]
        outbox = self._outbox_records(effects.events, event_traces, now.isoformat())
        return [
            now,
            # transfers
            [t.id for t in new],
            [t.source for t in new],
            [t.idempotency_key for t in new],
            [t.body_hash for t in new],
            [str(t.status) for t in new],
            [t.pending for t in new],
            [postings_to_json(t.postings) for t in new],
            [t.reference for t in new],
            [t.corrects_transfer_id for t in new],
            [json.dumps(t.metadata, separators=(",", ":")) if t.metadata else "{}" for t in new],
            [t.timeout_at for t in new],
            [t.finalized_at for t in new],
            # entries
            [e.account_id for e in entries],
            [e.transfer_id for e in entries],
            [str(e.kind) for e in entries],
            [str(e.direction) for e in entries],
            [e.posted_delta_minor for e in entries],
            [e.pending_delta_minor for e in entries],
            [e.currency for e in entries],
            [e.balances_after[0] for e in entries],
            [e.balances_after[1] for e in entries],
            [e.balances_after[2] for e in entries],
            [e.balances_after[3] for e in entries],
            # accounts
            touched,
            [b.debits_posted for b in balances],
            [b.credits_posted for b in balances],
            [b.debits_pending for b in balances],
            [b.credits_pending for b in balances],
            # finished pending transfers
            [t.id for t in finished],
            [str(t.status) for t in finished],
            [t.finalized_at for t in finished],
            [postings_to_json(t.postings) for t in finished],
            # outbox
            [r[0] for r in outbox],
            [r[1] for r in outbox],
            [r[2] for r in outbox],
            [r[3] for r in outbox],
            [r[4] for r in outbox],
            [r[5] for r in outbox],
        ]

    def _outbox_records(
        self, events: list[Event], trace_ids: list[str | None], time: str
    ) -> list[tuple[str, str, str, int, str, bytes]]:
        records = []
        for event, trace_id in zip(events, trace_ids, strict=True):
            event_id = new_id("evt")
            payload = envelope_bytes(
                event_id=event_id,
                type=event.type,
                source=self.uow.source,
                subject=event.subject,
                data=event.data,
                time=time,
                trace_id=trace_id,
            )
            records.append((event_id, TRANSFERS_TOPIC, event.subject, shard_of(event.subject), event.type, payload))
        return records


async def _transfers_by_keys(db: asyncpg.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Transfer]:
    if not keys:
        return {}
    rows = await db.fetch(
        f"""
        SELECT t.* FROM unnest($1::text[], $2::text[]) AS k(source, key)
         CROSS JOIN LATERAL ({_KEY_LOOKUP}) AS t
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["source"], r["idempotency_key"]): transfer_from_row(r) for r in rows}


async def _lock_transfers(db: asyncpg.Connection, ids: list[str]) -> dict[str, Transfer]:
    if not ids:
        return {}
    rows = await db.fetch(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids
    )
    return {r["id"]: transfer_from_row(r) for r in rows}


async def _lock_accounts(
    db: asyncpg.Connection, ids: list[str], keys: list[tuple[str, str]]
) -> tuple[dict[str, Account], datetime, dict[tuple[str, str], Transfer]]:
    """Locks the accounts in id order, reads the clock after the last lock, and finds the transfers
    already stored under the batch's idempotency keys: one statement, one round trip.

    Rows leave the locking CTE one by one, each locked before it is emitted, so the largest
    `clock_timestamp()` of them is later than every lock: entries of an account therefore get times that
    never go backwards, even across writers, which balance-as-of relies on. The key lookup is an
    uncorrelated subquery, evaluated once.
    """
    if not ids:
        now = await db.fetchval("SELECT clock_timestamp()")
        return {}, now, await _transfers_by_keys(db, keys)
    rows = await db.fetch(
        f"""
        WITH locked AS (
          SELECT {WRITE_ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
        )
        SELECT locked.*, clock_timestamp() AS locked_at,
               (SELECT json_agg(row_to_json(t))::text FROM unnest($2::text[], $3::text[]) AS k(source, key)
                 CROSS JOIN LATERAL ({_KEY_LOOKUP}) AS t) AS known
          FROM locked
        """,
        ids,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    if not rows:  # none of the accounts exists
        now = await db.fetchval("SELECT clock_timestamp()")
        return {}, now, await _transfers_by_keys(db, keys)
    accounts = {r["id"]: account_from_row(r, metadata=False) for r in rows}
    # The same (usually empty) list on every row: decode it once.
    return accounts, max(r["locked_at"] for r in rows), _known_from_json(rows[0]["known"])


def _known_from_json(known: str | None) -> dict[tuple[str, str], Transfer]:
    """Transfers already stored under a batch's keys, from the `json_agg` column of a read."""
    found: dict[tuple[str, str], Transfer] = {}
    for row in json.loads(known) if known else ():
        transfer = transfer_from_row(_with_times(row))
        found[(transfer.source, transfer.idempotency_key)] = transfer
    return found


def _with_times(row: dict[str, Any]) -> dict[str, Any]:
    """JSON rows carry timestamps as ISO strings."""
    for column in ("created_at", "timeout_at", "finalized_at"):
        if row[column] is not None:
            row[column] = datetime.fromisoformat(row[column])
    return row


async def _existing_transfer_ids(db: asyncpg.Connection, ids: list[str]) -> set[str]:
    rows = await db.fetch("SELECT id FROM transfers WHERE id = ANY($1::text[])", ids)
    return {r["id"] for r in rows}


# One unique-index probe per key, whatever the planner thinks of the table's size: the LIMIT keeps the
# subquery from being flattened into a join that could become a hash join over a sequential scan.
_KEY_LOOKUP = f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE source = k.source AND idempotency_key = k.key LIMIT 1"

PIPELINE_SPLIT_TRANSFERS_MIN = 16  # below this an idle writer takes everything at once (lowest latency)


def _chain_of(effects: BatchEffects, accounts: dict[str, Account], now: datetime) -> _Chain:
    # References, not copies: the engine is done with them; `_prepare` copies the ones it uses.
    return _Chain(
        accounts={a: accounts[a] for a in effects.touched_account_ids()},
        keys={(t.source, t.idempotency_key): t for t in effects.new_transfers},
        now=now,
    )


async def _exact(task: asyncio.Task[bool]) -> bool:
    """Waits for a batch and tells whether it committed exactly what it computed first."""
    await asyncio.wait([task])
    return not task.cancelled() and task.exception() is None and task.result()
