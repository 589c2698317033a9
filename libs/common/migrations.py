"""Alembic, once for every service: each service has its own database and its own migrations folder.

A service's `store/migrations/env.py` is two lines: import its metadata and call `run_env`.

Alembic is imported where it is used, not with this module: the launcher imports this module before it forks the
services (deploy/launcher/main.py), and a warm start, every database already at head (`script_heads`,
`current_revisions`), needs no Alembic at all (docs/performance.md, "Fifth pass").
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.db import asyncpg_dsn
from libs.common.outbox_tables import NOTIFY_TRIGGER_SQL, add_messaging_tables

if TYPE_CHECKING:
    from alembic.config import Config

CONNECT_TIMEOUT_SECONDS = 5.0


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Blocking; call through `asyncio.to_thread` from async code (env.py runs its own loop)."""
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def script_heads(migrations_dir: Path, cache: Path | None = None) -> set[str]:
    """The head revision(s) of a migrations folder.

    Alembic finds them by importing every revision file (~60 ms of CPU a service, with Alembic's own import
    ~0.2 s more). `cache`, a JSON file (the launcher's `.juhe/migration-heads.json`), keeps them keyed by the
    folder's listing (each revision file's name, size and modification time): any file added, removed or edited
    changes the listing, and the heads are read again."""
    listing = [
        [path.name, stat.st_size, stat.st_mtime_ns]
        for path in sorted((migrations_dir / "versions").glob("*.py"))
        for stat in (path.stat(),)
    ]
    key = str(migrations_dir.resolve())
    cached: dict[str, Any] = {}
    if cache is not None:
        try:
            cached = json.loads(cache.read_text())
        except (OSError, ValueError):
            cached = {}
        entry = cached.get(key) if isinstance(cached, dict) else None
        if isinstance(entry, dict) and entry.get("listing") == listing:
            return {str(head) for head in entry.get("heads", [])}
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config(migrations_dir, "postgresql://unused")).get_heads())
    if cache is not None:
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = {"listing": listing, "heads": sorted(heads)}
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text(json.dumps(cached))
        partial.replace(cache)  # whole or not at all
    return heads


async def current_revisions(database_url: str) -> set[str]:
    """What the database says it is at; empty when it was never migrated (or is unreachable)."""
    import asyncpg

    try:
        conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return set()
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {row["version_num"] for row in rows}


def run_env(target_metadata: MetaData) -> None:
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())


def create_messaging_tables() -> None:
    """For a service's first migration: outbox, inbox, dead letters and the NOTIFY trigger."""
    from alembic import op

    metadata = MetaData()
    add_messaging_tables(metadata)
    bind = op.get_bind()
    metadata.create_all(bind)
    for statement in NOTIFY_TRIGGER_SQL:
        op.execute(statement)


INBOX_BY_CONSUMER_SQL = (
    # Idempotent on purpose: on a fresh database the first migration already creates the current shape
    # (create_messaging_tables builds from today's metadata), on an old one it turns the old shape into it.
    # Old rows get the legacy consumer "" (outbox_tables.LEGACY_INBOX_CONSUMER): seen by every consumer.
    "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS consumer text NOT NULL DEFAULT ''",
    "ALTER TABLE inbox ALTER COLUMN consumer DROP DEFAULT",
    "ALTER TABLE inbox DROP CONSTRAINT IF EXISTS inbox_pkey",
    "ALTER TABLE inbox ADD CONSTRAINT inbox_pkey PRIMARY KEY (consumer, event_id)",
    "ALTER TABLE inbox_dead_letter ADD COLUMN IF NOT EXISTS consumer text",
)


def key_inbox_by_consumer() -> None:
    """For each service's "inbox by consumer" migration: the inbox keyed by (consumer, event_id), so two
    consumer groups of one service each apply an event once instead of the first hiding it from the other."""
    from alembic import op

    for statement in INBOX_BY_CONSUMER_SQL:
        op.execute(statement)


def new_revision(service: str, message: str) -> Path:
    """`make revision SVC=… MSG=…`: an empty revision numbered after the service's head ("0013" after
    "0012"), so ids stay sequential and readable (docs/contributing: one head per service)."""
    from libs.common.services import SERVICES

    if service not in SERVICES:
        raise SystemExit(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
    migrations_dir = SERVICES[service].migrations_dir
    numbers = [int(p.name[:4]) for p in (migrations_dir / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    from alembic import command

    script = command.revision(alembic_config(migrations_dir, "postgresql://unused"), message=message, rev_id=rev_id)
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "revision":
        raise SystemExit('usage: python -m libs.common.migrations revision <service> "<message>"')
    print(new_revision(sys.argv[2], sys.argv[3]))
