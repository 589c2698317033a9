"""Wake-ups: one LISTEN connection per process, shared by the outbox relay and the worker loops.

Why (docs/performance.md, "Fifth pass"): a worker loop whose work this platform creates (a webhook delivery, a
split, a payout…) polled its table every few seconds to find it. Now the work table has a trigger
(`work_notify_trigger_sql`, added by the service's migration) that sends `pg_notify('juhe_work', '<queue>')` in the
transaction that inserts a due row or moves one to a due status (code that makes work some other way calls
`notify_work` in its transaction): PostgreSQL delivers it after the commit, to every process listening (so every
replica hears it), and never for a transaction that rolled back. Such a loop then sleeps long while idle
(`libs.common.web.run_rounds`, `WOKEN_IDLE_DELAY_SECONDS`) and runs a round as soon as it is woken.

A NOTIFY is lost while a listener is not connected, so nothing relies on it alone:
- while the hub is not listening (before its first connect, after a lost connection) a woken loop keeps its
  normal interval and back-off, as if it had no wake-up at all;
- every (re)connect and every lost connection sets every watched event: each loop runs one round right away
  (work committed while nobody listened is found) and then sleeps by whatever the new state allows;
- a long idle sleep is still bounded (the loop looks anyway), and work that becomes due by time (a retry's
  `next_attempt_at`) is found by the doubling idle sleep: a retry due T seconds later is run by about 2T.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.common.db import asyncpg_dsn
from libs.common.logging import get_logger
from libs.common.tasks import close_bounded, raise_if_cancelled

log = get_logger("juhe.wakeups")

WORK_CHANNEL = "juhe_work"
LISTEN_CONNECT_TIMEOUT_SECONDS = 10.0
LISTEN_CLOSE_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = 1.0

_NOTIFY_WORK = text(f"SELECT pg_notify('{WORK_CHANNEL}', :queue)")


async def notify_work(conn: AsyncConnection, queue: str) -> None:
    """Wake `queue`'s loop in every process after this transaction commits (for work a trigger does not cover)."""
    await conn.execute(_NOTIFY_WORK, {"queue": queue})


WORK_NOTIFY_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION juhe_work_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{WORK_CHANNEL}', TG_ARGV[0]);
  RETURN NULL;
END $$;
"""


def work_notify_trigger_sql(table: str, due_statuses: tuple[str, ...], queue: str | None = None) -> tuple[str, str]:
    """The statements a migration runs so that a row of `table` inserted, or moved to, one of `due_statuses` wakes
    `queue`'s loop (default: the table's name) after the commit. Row-level, but PostgreSQL delivers one notification
    per transaction for a repeated (channel, payload), so a batch insert wakes each listener once. A claim that only
    moves `next_attempt_at` does not set `status`, so a loop's own rounds do not wake it."""
    statuses = ", ".join(f"'{status}'" for status in due_statuses)
    return (
        WORK_NOTIFY_FUNCTION_SQL,
        f"""
CREATE TRIGGER {table}_work_notify AFTER INSERT OR UPDATE OF status ON {table}
FOR EACH ROW WHEN (NEW.status IN ({statuses})) EXECUTE FUNCTION juhe_work_notify('{queue or table}');
""",
    )


def drop_work_notify_trigger_sql(table: str) -> str:
    """The downgrade of `work_notify_trigger_sql` (the shared function stays: other tables may use it)."""
    return f"DROP TRIGGER IF EXISTS {table}_work_notify ON {table}"


@dataclass(frozen=True)
class Waiter:
    """What a loop waits on: its event (set by a NOTIFY of its queue, and on every connect and disconnect) and
    whether the hub is listening (only then may the loop sleep long)."""

    event: asyncio.Event
    hub: Wakeups

    @property
    def listening(self) -> bool:
        return self.hub.listening


class Wakeups:
    """One LISTEN connection of a process: `watch(channel, event)` sets `event` on every NOTIFY on `channel` (with
    `payload` when given), and on every connect and disconnect. `run` keeps the connection until cancelled."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.listening = False
        self._watched: dict[str, list[tuple[str | None, asyncio.Event]]] = {}

    def watch(self, channel: str, event: asyncio.Event, payload: str | None = None) -> None:
        self._watched.setdefault(channel, []).append((payload, event))

    def waiter(self, queue: str) -> Waiter:
        """A loop's waiter for the work queue `queue` (the payload of `notify_work` and of the trigger)."""
        event = asyncio.Event()
        self.watch(WORK_CHANNEL, event, queue)
        return Waiter(event, self)

    def _set_all(self) -> None:
        for watched in self._watched.values():
            for _, event in watched:
                event.set()

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for wanted, event in self._watched.get(channel, ()):
            if wanted is None or wanted == payload:
                event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection (each change of state wakes everyone)."""
        dsn = asyncpg_dsn(self.engine.url.render_as_string(hide_password=False))
        while True:
            raise_if_cancelled()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=LISTEN_CONNECT_TIMEOUT_SECONDS)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, done=closed: done.set())
                for channel in {WORK_CHANNEL, *self._watched}:  # a loop's waiter may come after the connect
                    await conn.add_listener(channel, self._on_notify)
                self.listening = True
                self._set_all()  # one round each now: work committed before LISTEN took effect notified nobody
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("wake-up listener reconnecting", error=repr(exc))
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                was_listening, self.listening = self.listening, False
                if was_listening:
                    self._set_all()  # back to the short intervals at once, not after a long sleep
                if conn is not None:
                    # Bounded: close() waits for the server's goodbye; past the bound asyncpg aborts the socket.
                    await close_bounded(conn.close(timeout=LISTEN_CLOSE_TIMEOUT_SECONDS), name="wake-up listener")
                    if not conn.is_closed():
                        conn.terminate()
