"""Database engine and the unit of work: the only place a transaction commits.

Services use SQLAlchemy Core on an `AsyncConnection`. Events produced by a change are written to the
`outbox` table inside the same transaction (`tx.publish`), which is what makes "state changed" and
"event will be published" one atomic fact.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Histogram
from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from libs.common import tracing
from libs.common.events import Envelope
from libs.common.logging import current_trace_id
from libs.common.outbox_tables import OUTBOX_SHARD_COUNT, outbox

if TYPE_CHECKING:
    import asyncpg

IsolationLevel = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]

# How long a unit of work waited for its connection: the pool's queue when every connection is checked out
# (`database_pool_size` + `database_pool_overflow`), a new connection when the pool opens one, and the
# ping of a connection that was idle. What a request waits here is waiting, not work: the first place to look
# when latency grows while the CPU does not (docs/performance.md).
connection_wait_seconds = Histogram(
    "juhe_db_connection_wait_seconds",
    "Time to get a database connection for a unit of work",
    ["service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


# A pooled connection idle for longer than this is pinged before it is handed out (see `_ping_when_idle`).
PING_IDLE_SECONDS = 1.0


def create_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> AsyncEngine:
    """A service's engine: at most `pool_size + max_overflow` connections, as before, but every connection the pool
    opens is kept (until `pool_recycle`) instead of closing the `max_overflow` ones as soon as they come back.

    Under a load whose concurrency hovers around `pool_size`, SQLAlchemy's overflow connections were closed on
    return and opened again moments later: 0.31-0.34 new connections per payment in the cashier (bench-e2e,
    warmed platform), each a PostgreSQL backend forked and set up (~4 ms of PostgreSQL's CPU, ~2.5 ms of the
    service's: the dialect's set-up queries, then every statement prepared again on the new connection). The
    peak is unchanged; a pool that once needed its overflow now holds those idle backends (~2.5 MiB each), and
    a pool that never did opens none. Last in, first out: the connection just returned is reused, so a lightly
    used pool keeps using the same few connections, which stay warm and skip the idle ping
    (`_ping_when_idle`), while the others idle (docs/performance.md, "Fifth pass: the common path")."""
    engine = create_async_engine(
        url, pool_size=pool_size + max_overflow, max_overflow=0, pool_use_lifo=True, pool_recycle=1800
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's `pool_pre_ping`, but only for a connection that sat in the pool for `PING_IDLE_SECONDS`.

    `pool_pre_ping` pings on every checkout, and the asyncpg dialect's ping is three round trips (BEGIN, `;`,
    ROLLBACK): three more per transaction, ~40 % of the statements a payment's create sent (docs/performance.md).
    A connection back in use within a second has just worked; one idle longer (every connection after a
    PostgreSQL restart: the outage and the restart take longer than that) is pinged as before, and a dead one is
    replaced by a fresh connection (`DisconnectionError` makes the pool retry the checkout), so a restarted
    database is still never seen by a unit of work. A connection that breaks within the second fails its
    statement, which invalidates the whole pool and answers 503 `database_unavailable` (retryable)."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")  # None: a new connection
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"pooled connection failed its ping: {exc!r}") from exc


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The same database as a plain libpq URL, for code that talks to asyncpg directly (LISTEN, admin)."""
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """One of the engine's pooled connections as the asyncpg connection itself, for a hot loop that runs its own
    statements and transaction (`async with conn.transaction():`) in plain SQL: the outbox relay's pass. Each
    statement through SQLAlchemy's adapter costs ~0.1 ms of CPU more (its cursor, compiled cache, result
    wrapping; docs/performance.md, "Sixth pass"); asyncpg's own statement cache still prepares each text once.

    SQLAlchemy begins nothing on this connection (its adapter starts a transaction lazily, at its first
    statement), and on return its reset rolls back only a transaction it started: what the caller left open is
    rolled back by asyncpg's `transaction()` block. A connection that broke meanwhile, or that is still in a
    transaction when it comes back (a rollback cut short by a cancel), is invalidated: the pool never hands it out
    again, and closing it ends that transaction on the server. Never inside a unit of work (`Tx.conn` has its own
    transaction)."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        try:
            yield driver
        finally:
            if driver.is_closed() or driver.is_in_transaction():
                await conn.invalidate()


def shard_of(key: str) -> int:
    """Stable shard of an aggregate key: the relay serialises publishing per shard."""
    return zlib.crc32(key.encode()) % OUTBOX_SHARD_COUNT


def new_envelope(source: str, *, type: str, subject: str, data: dict[str, Any], data_version: int = 1) -> Envelope:
    """An event of `source` as `Tx.publish` builds it, with the current work's trace ids. Also for a statement that
    writes its event's outbox row itself (`outbox_row`, e.g. a data-modifying CTE of the change it announces): one
    statement, atomic on its own, where BEGIN, the change, the outbox INSERT and COMMIT were four round trips
    (docs/performance.md, "Sixth pass: the cashier's statements on asyncpg")."""
    return Envelope(
        type=type,
        source=source,
        subject=subject,
        data=data,
        data_version=data_version,
        trace_id=current_trace_id(),
        traceparent=tracing.current_traceparent(),  # None (no work) while tracing is off
    )


# The columns of an `outbox` row a writer gives (`outbox_row`); `seq`, `created_at` and the relay's are the table's.
OUTBOX_FIELDS = ("event_id", "topic", "key", "shard", "event_type", "payload")


def outbox_row(topic: str, envelope: Envelope) -> dict[str, Any]:
    """The `outbox` row of `envelope` (its shard from the subject: the relay publishes a shard in `seq` order), as
    `Tx.flush_events` writes it. Any INSERT of it wakes the relay (the table's statement trigger)."""
    return {
        "event_id": envelope.id,
        "topic": topic,
        "key": envelope.subject,
        "shard": shard_of(envelope.subject),
        "event_type": envelope.type,
        "payload": envelope.to_bytes(),
    }


async def driver_fetch(conn: AsyncConnection, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run plain SQL on the asyncpg connection under `conn`, in its transaction, for a statement a hot path runs per
    event or per batch: through SQLAlchemy's adapter each costs ~0.1 ms of CPU more (its cursor, compiled cache,
    result wrapping; docs/performance.md, "Sixth pass"), and asyncpg's statement cache still prepares the text once.

    SQLAlchemy's adapter sends BEGIN lazily, with its own first statement, so when this is a unit of work's first the
    transaction is begun here first (the adapter's own start, with the isolation level the unit of work asked for;
    nothing on an autocommit connection), and the statement commits or rolls back with the others. Rows come decoded
    by the codecs SQLAlchemy's dialect installed on the connection (json and jsonb with `json.loads`); a JSONB value
    is passed as its JSON text and cast in the SQL. A connection that broke under the statement is invalidated
    (SQLAlchemy's error handling never saw it), so the pool never hands it out again."""
    fairy = await conn.get_raw_connection()
    adapted: Any = fairy.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()  # a no-op on an autocommit connection
    driver: asyncpg.Connection = fairy.driver_connection
    try:
        rows: list[asyncpg.Record] = await driver.fetch(sql, *args)
    except BaseException:
        if driver.is_closed():
            await conn.invalidate()
        raise
    return rows


class ArrayInsert:
    """An INSERT of any number of rows in one statement on asyncpg (`driver_fetch`): the rows go as one array per
    column, `INSERT INTO <table> (<columns>) SELECT … FROM unnest($1::<type>[], …) WITH ORDINALITY … ORDER BY` the
    rows' order, then `tail` (`ON CONFLICT …`, `RETURNING …`). One prepared text whatever the number of rows, where
    SQLAlchemy's executemany built and wrapped a VALUES list per call (docs/performance.md, "Seventh pass"). The
    array types come from the table's column types; a JSONB column goes as its JSON text (`json.dumps`, so None is
    JSON null as through SQLAlchemy's JSONB) and is cast in the SQL. Rows are inserted in the given order (an
    identity column such as the outbox's `seq` numbers them so)."""

    __slots__ = ("_json", "columns", "sql")

    def __init__(self, table: Table, columns: Sequence[str], tail: str = "") -> None:
        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialect classes are untyped
        quote = dialect.identifier_preparer.quote
        types = {name: table.c[name].type for name in columns}
        self.columns = tuple(columns)
        self._json = frozenset(name for name, type_ in types.items() if isinstance(type_, postgresql.JSONB))
        arrays = ", ".join(
            f"${i}::{'text' if name in self._json else types[name].compile(dialect=dialect)}[]"
            for i, name in enumerate(self.columns, start=1)
        )
        names = ", ".join(quote(name) for name in self.columns)
        select_list = ", ".join(f"r.{quote(name)}{'::jsonb' if name in self._json else ''}" for name in self.columns)
        self.sql = (
            f"INSERT INTO {quote(table.name)} ({names}) SELECT {select_list} FROM unnest({arrays})"
            f" WITH ORDINALITY AS r ({names}, n) ORDER BY r.n {tail}"
        ).rstrip()

    def arguments(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """One list per column (a row without a column gives NULL there)."""
        return [
            [json.dumps(row.get(name)) for row in rows] if name in self._json else [row.get(name) for row in rows]
            for name in self.columns
        ]

    async def fetch(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[asyncpg.Record]:
        """Insert `rows` in `conn`'s transaction; what the tail returns (nothing without `RETURNING`)."""
        return await driver_fetch(conn, self.sql, *self.arguments(rows))


# `Tx.flush_events`' statement: in publish order, the `seq` the relay publishes a shard by.
_INSERT_OUTBOX = ArrayInsert(outbox, OUTBOX_FIELDS)


@dataclass
class Tx:
    """One open transaction: a Core connection plus the events to write into the outbox with it."""

    conn: AsyncConnection
    source: str
    _events: list[tuple[str, Envelope]] = field(default_factory=list)

    def publish(self, *, topic: str, type: str, subject: str, data: dict[str, Any], data_version: int = 1) -> Envelope:
        envelope = new_envelope(self.source, type=type, subject=subject, data=data, data_version=data_version)
        self._events.append((topic, envelope))
        return envelope

    def take_outbox_rows(self) -> list[dict[str, Any]]:
        """The outbox rows of the events published so far, handed to the caller's own statement to write (a data-
        modifying CTE of a write this transaction makes anyway; e.g. the cashier's webhook event,
        services/cashier/store/webhooks.py `insert_event_with_deliveries`), and no longer written by
        `flush_events`: one round trip fewer before COMMIT. The caller must write them in this transaction."""
        rows = [outbox_row(topic, env) for topic, env in self._events]
        self._events.clear()
        return rows

    async def flush_events(self) -> None:
        """The events published so far as outbox rows, in one statement on the connection's asyncpg (`ArrayInsert`)."""
        if not self._events:
            return
        rows = self.take_outbox_rows()
        await _INSERT_OUTBOX.fetch(self.conn, rows)


class UnitOfWork:
    def __init__(self, engine: AsyncEngine, *, source: str) -> None:
        self.engine = engine
        self.source = source
        self._connection_wait = connection_wait_seconds.labels(source)
        # `read()`'s and `autocommit()`'s engine: the same pool (its size, its idle ping, its invalidation), each
        # connection set to autocommit as it is checked out and back to the pool's default as it returns, by
        # SQLAlchemy as before. Set on the engine, not per connection (`conn.execution_options(...)`: a greenlet hop
        # and a copy of its options each time), and handed out without a context manager of their own around
        # `_connect`'s: ~5-6 checkouts per payment in the cashier (docs/performance.md, "Seventh pass: the checkout").
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def _connect(self, engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
        started = time.perf_counter()
        async with (engine or self.engine).connect() as conn:
            self._connection_wait.observe(time.perf_counter() - started)
            yield conn

    @asynccontextmanager
    async def begin(self, *, isolation_level: IsolationLevel | None = None) -> AsyncIterator[Tx]:
        async with self._connect() as conn:
            if isolation_level:
                await conn.execution_options(isolation_level=isolation_level)
            async with conn.begin():
                tx = Tx(conn=conn, source=self.source)
                yield tx
                await tx.flush_events()

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for queries that change nothing, each statement its own transaction (autocommit).

        At READ COMMITTED, the isolation every unit of work has unless it asks for another, each statement of a
        transaction sees its own snapshot anyway, so an explicit BEGIN … COMMIT around reads gave no more
        consistent a view; it cost two round trips per read, four of a payment create's six units of work
        (docs/performance.md). Writing, locking (`FOR UPDATE`, advisory locks), `SET LOCAL` and server-side
        cursors (`conn.stream(...)`, which PostgreSQL opens only inside a transaction) belong in `begin()`, or, for
        a write that stands alone in one statement, in `autocommit()`."""
        return self._connect(self._autocommit_engine)

    def autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """`read()`'s autocommit connection, for writes that each stand alone in ONE statement: a compare-and-set
        `UPDATE … RETURNING`, a claim `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`, a
        data-modifying CTE. A single statement is atomic and durable on its own, so it needs no BEGIN/COMMIT: one
        round trip instead of three (docs/performance.md, fifth pass). Never for two writes that must commit
        together as separate statements: a change's outbox row must commit with it, so a change that writes an event
        does it in `begin()`, or in the change's own statement as a data-modifying CTE (`outbox_row`: the cashier's
        create and a notified success, services/cashier/store/payments.py)."""
        return self._connect(self._autocommit_engine)
