"""Sliding-window rate limits shared by two replicas, over real HTTP, counted in the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from gateway.tests.integration.conftest import Stack, StackFactory
from gateway.tests.integration.test_security_boundary import problem, signed_headers
from libs.common.db import asyncpg_dsn


async def _get(raw: httpx.AsyncClient, stack: Stack, base_url: str) -> httpx.Response:
    return await raw.get(f"{base_url}/v1/payments", headers=signed_headers(stack, "GET", "/v1/payments", b""))


async def test_a_burst_at_the_end_of_a_window_still_counts_after_the_boundary(make_stack: StackFactory) -> None:
    """The fixed window admitted a full new budget right after a boundary; the sliding estimate does not."""
    window = 3600
    stack: Stack = await make_stack(rate_limit_read_max=5, rate_limit_window_seconds=window)
    replica = stack.start_gateway()
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
        previous_start = int(now // window) * window - window
        # The previous window was spent heavily (as if in its last moments): its weight fills the limit for
        # all but the last few milliseconds of the current hour.
        await conn.execute(
            "INSERT INTO rate_limit_counters (bucket, window_start, hits, expires_at)"
            " VALUES ($1, $2, $3, to_timestamp($4))",
            f"{stack.keys['key_id']}:read",
            previous_start,
            5_000_000,
            previous_start + 3 * window,
        )
        async with httpx.AsyncClient() as raw:
            for base_url in (stack.url, replica.base_url):
                refused = await _get(raw, stack, base_url)
                assert refused.status_code == 429 and problem(refused) == "rate_limited"
                assert 1 <= int(refused.headers["retry-after"]) <= window
            assert stack.upstream.calls == []
            # Another route class has its own budget; refused requests were not counted in this window.
            other = await raw.post(
                f"{stack.url}/v1/payments",
                content=b'{"amount_minor":1,"currency":"CNY"}',
                headers=signed_headers(stack, "POST", "/v1/payments", b'{"amount_minor":1,"currency":"CNY"}'),
            )
            assert other.status_code == 201, other.text
        current = await conn.fetchval(
            "SELECT hits FROM rate_limit_counters WHERE bucket = $1 AND window_start = $2",
            f"{stack.keys['key_id']}:read",
            previous_start + window,
        )
        assert current is None
    finally:
        await conn.close()


async def test_waiting_retry_after_is_enough_on_another_replica(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(rate_limit_read_max=2, rate_limit_window_seconds=1)
    replica = stack.start_gateway()
    async with httpx.AsyncClient() as raw:
        refused: httpx.Response | None = None
        for i in range(50):  # two fit in a 1 s window; the estimate refuses the next ones
            response = await _get(raw, stack, stack.url if i % 2 == 0 else replica.base_url)
            if response.status_code == 429:
                refused = response
                break
            assert response.status_code == 200
        assert refused is not None and problem(refused) == "rate_limited"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 2  # at most: the rest of this window plus half of the next
        await asyncio.sleep(retry_after)
        admitted = await _get(raw, stack, replica.base_url)
        assert admitted.status_code == 200, admitted.text


async def test_concurrent_requests_on_two_replicas_never_exceed_the_limit(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(rate_limit_read_max=7, rate_limit_window_seconds=3600)
    replica = stack.start_gateway()
    started = time.time()
    async with httpx.AsyncClient() as raw:
        responses = await asyncio.gather(
            *(_get(raw, stack, stack.url if i % 2 == 0 else replica.base_url) for i in range(20))
        )
    statuses = sorted(r.status_code for r in responses)
    if int(started // 3600) == int(time.time() // 3600):  # no hour boundary in between (else the estimate moved)
        assert statuses == [200] * 7 + [429] * 13
    assert len(stack.upstream.calls) == statuses.count(200)
