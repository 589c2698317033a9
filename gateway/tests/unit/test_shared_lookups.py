"""Concurrent cache misses of one key share one lookup (gateway/flows/identities/base.py `_SharedLookups`): a burst
of one merchant's requests after its cached key or pinned version expired runs one read, not one per request."""

from __future__ import annotations

import asyncio

import pytest

from gateway.flows.identities.base import _SharedLookups


async def test_concurrent_misses_share_one_lookup_and_a_later_miss_loads_again() -> None:
    lookups: _SharedLookups[str | None] = _SharedLookups()
    release = asyncio.Event()
    loads: list[str] = []

    async def load() -> str | None:
        loads.append("read")
        await release.wait()
        return "2026-12-01"

    waiters = [asyncio.create_task(lookups.run("mch_1", load)) for _ in range(16)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == ["2026-12-01"] * 16
    assert loads == ["read"]
    assert await lookups.run("mch_1", load) == "2026-12-01"  # finished: the next miss reads again
    assert loads == ["read", "read"]


async def test_a_cancelled_waiter_leaves_the_lookup_to_the_others_and_a_failure_reaches_every_waiter() -> None:
    lookups: _SharedLookups[str | None] = _SharedLookups()
    release = asyncio.Event()

    async def load() -> str | None:
        await release.wait()
        return None

    first, second = (asyncio.create_task(lookups.run("mch_1", load)) for _ in range(2))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second is None
    with pytest.raises(asyncio.CancelledError):
        await first

    async def failing() -> str | None:
        await asyncio.sleep(0)
        raise ConnectionRefusedError("database down")

    waiters = [asyncio.create_task(lookups.run("mch_1", failing)) for _ in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
