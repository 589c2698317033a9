"""The service engine's pool keeps the connections it opened (libs/common/db.py `create_engine`): a connection
beyond `pool_size`, opened under load, is reused by the next burst instead of a new PostgreSQL backend each time
(docs/performance.md, "Fifth pass: the common path"); the peak stays `pool_size + max_overflow`."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from libs.common.db import UnitOfWork, create_engine
from libs.common.embedded import create_database, database_url
from libs.common.testing.plugin import Infra


async def _backend_pid(uow: UnitOfWork, entered: asyncio.Event | None = None, hold: asyncio.Event | None = None) -> int:
    """The backend a unit of work ran on; with `hold`, its connection is kept until `hold` is set."""
    async with uow.read() as conn:
        pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        if entered is not None and hold is not None:
            entered.set()
            await hold.wait()
        return pid


async def _unit_of_work(infra: Infra, name: str, *, pool_size: int, max_overflow: int) -> UnitOfWork:
    """A unit of work on a new database `name` (dropped after the test), its engine as a service's."""
    await create_database(infra.server_url, name)
    infra.created_databases.append(name)
    engine = create_engine(database_url(infra.server_url, name), pool_size=pool_size, max_overflow=max_overflow)
    return UnitOfWork(engine, source="test")


async def test_connections_opened_beyond_pool_size_are_kept_and_the_peak_is_bounded(juhe_infra: Infra) -> None:
    uow = await _unit_of_work(juhe_infra, "t_pool_kept", pool_size=1, max_overflow=2)
    try:
        bursts: list[set[int]] = []
        for _ in range(2):
            release = asyncio.Event()
            entered = [asyncio.Event() for _ in range(3)]
            burst = [asyncio.create_task(_backend_pid(uow, e, release)) for e in entered]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in entered)), timeout=30)
            if not bursts:  # the peak: a fourth unit of work waits for one of the three, it opens no fourth
                fourth = asyncio.create_task(_backend_pid(uow))
            release.set()
            bursts.append(set(await asyncio.gather(*burst)))
        assert len(bursts[0]) == 3
        assert bursts[1] == bursts[0]  # the same three backends: none closed and opened again
        assert await fourth in bursts[0]
    finally:
        await uow.engine.dispose()


async def test_autocommit_connection_goes_back_transactional_and_a_broken_one_is_not_reused(juhe_infra: Infra) -> None:
    """`read()` takes its connection from the same pool, set to autocommit by the engine it uses: the connection it
    returns is a transactional one again for the next `begin()` (its ROLLBACK undoes its write), and a connection that
    broke under a `read()` is invalidated and never handed out again."""
    uow = await _unit_of_work(juhe_infra, "t_pool_autocommit", pool_size=1, max_overflow=0)
    try:
        async with uow.autocommit() as conn:
            await conn.execute(text("CREATE TABLE t (n int)"))
        pid = await _backend_pid(uow)

        class Undone(Exception):
            pass

        with pytest.raises(Undone):
            async with uow.begin() as tx:
                assert int((await tx.conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()) == pid
                await tx.conn.execute(text("INSERT INTO t VALUES (1)"))
                raise Undone
        async with uow.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0

        with pytest.raises(DBAPIError):
            async with uow.read() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert await _backend_pid(uow) != pid
    finally:
        await uow.engine.dispose()
