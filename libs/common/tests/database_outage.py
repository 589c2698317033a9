"""A database outage for tests: one test database stops taking connections, its open ones are cut.

`ALTER DATABASE … ALLOW_CONNECTIONS false` refuses every new connection to that database only (superusers
included), `pg_terminate_backend` ends the live ones — as a PostgreSQL restart does for the services, while
the other tests' databases on the same server carry on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.engine import make_url

from libs.common.db import asyncpg_dsn


async def _admin(server_url: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def database_outage(server_url: str, database_url: str) -> AsyncIterator[None]:
    """Inside: `database_url`'s database is down. On exit it is back (connections allowed again)."""
    name = make_url(database_url).database
    assert name, database_url
    await _admin(server_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await _admin(
            server_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        yield
    finally:
        await _admin(server_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
