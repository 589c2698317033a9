"""The service engine's pool keeps the connections it opened (libs/common/db.py `create_engine`): a connection
beyond `pool_size`, opened under load, is reused by the next burst instead of a new PostgreSQL backend each time
(docs/performance.md, "Fifth pass: the common path"); the peak stays `pool_size + max_overflow`."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

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


async def test_connections_opened_beyond_pool_size_are_kept_and_the_peak_is_bounded(juhe_infra: Infra) -> None:
    name = "t_pool_kept"
    await create_database(juhe_infra.server_url, name)
    juhe_infra.created_databases.append(name)
    engine = create_engine(database_url(juhe_infra.server_url, name), pool_size=1, max_overflow=2)
    uow = UnitOfWork(engine, source="test")
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
        await engine.dispose()
