"""Helpers for cross-service end-to-end tests (real processes, real PostgreSQL, real broker), and the demo
platform those tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.embedded import free_port
from libs.common.outbox_tables import inbox
from libs.common.services import SANDBOXES, SERVICES
from libs.common.testing.plugin import data_dir_outside_pytest
from services.settlement.store.tables import ledger_accounts
from tests.e2e.test_launcher import Launched

EVENT_WAIT_SECONDS = 60.0


@pytest.fixture
async def engines() -> AsyncIterator[Callable[[str], AsyncEngine]]:
    made: list[AsyncEngine] = []

    def make(url: str) -> AsyncEngine:
        engine = create_async_engine(url)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.dispose()


async def open_account(base_url: str, holder_id: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "/v1/accounts",
            json={"holder_id": holder_id, "currency": "CNY", "kind": "merchant_settled", "code": "2202"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def mirrored(
    engine: AsyncEngine, account_ids: list[str], *, wait_seconds: float = EVENT_WAIT_SECONDS
) -> dict[str, Any]:
    """Wait until settlement mirrors every account; return {account_id: applied_count}."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    rows: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(ledger_accounts.c.account_id, ledger_accounts.c.applied_count).where(
                    ledger_accounts.c.account_id.in_(account_ids)
                )
            )
            rows = {r.account_id: r.applied_count for r in result}
        if len(rows) == len(account_ids):
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"settlement mirrored only {sorted(rows)} of {sorted(account_ids)}")


async def inbox_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return len((await conn.execute(select(inbox.c.event_id))).all())


# ------------------------------------------------------------------------------------- the shared demo platform
# One `make run` platform (the launcher, its seed) for every test that asks for `demo_platform`: a start of its
# nine processes is the dearest thing in the suite, so the files that only need the demo merchant, its channels
# and its users share one. `make test` sends those files to one worker together (libs/common/testing/
# scheduling.py), where the platform starts once and stops after the last test that uses it. The settings are
# the union of what those files need; each test makes its own orders, users and stocks, so none sees another's.
DEMO_PLATFORM_ENV = {
    "JUHE_CASHIER_PAYMENT_CODE_DEADLINE_SECONDS": "8",  # an unconfirmed 付款码 is reversed after 8 s
    "JUHE_CASHIER_POLL_INITIAL_SECONDS": "1",  # a processing payment is polled every 1-2 s (default 5 s, backing
    "JUHE_CASHIER_POLL_BACKOFF_MAX_SECONDS": "2",  # off to minutes)
    "JUHE_SANDBOX_NOTIFY_SCALE": "0.01",  # the sandboxes' notifications come at once
    "JUHE_SANDBOX_WECHATPAY_REFUND_AUTO_SECONDS": "1",  # WeChat Pay refunds succeed after 1 s (default 60 s)
}
DEMO_PLATFORM_FIXTURE = "demo_platform"


class _DemoPlatform:
    """The shared platform, started on first use and stopped when the next test does not use it (or at the
    session's end); a later test that asks again gets a fresh one (only when the files are run out of order)."""

    def __init__(self) -> None:
        self.run: Launched | None = None
        self.stack = contextlib.ExitStack()

    def get(self) -> Launched:
        if self.run is None:
            data_dir: Path = self.stack.enter_context(data_dir_outside_pytest("juhe-demo-"))
            ports = {name: free_port() for name in [*SERVICES, *SANDBOXES]}
            self.run = Launched(data_dir, ports, DEMO_PLATFORM_ENV)
        return self.run

    def stop(self) -> None:
        run, self.run = self.run, None
        try:
            if run is not None:
                run.stop()
        finally:
            self.stack.close()


_DEMO = _DemoPlatform()


@pytest.fixture(scope="module")
def demo_platform() -> Launched:
    """The running demo platform (`make run`'s, with DEMO_PLATFORM_ENV), shared by the tests that use it."""
    return _DEMO.get()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that use the shared platform run one after another (from where the first of them was
    collected), so that a run in one process (`TEST_WORKERS=0`, a list of files) starts it once too; the
    order is the same in every xdist worker, as xdist requires."""
    shared = [item for item in items if DEMO_PLATFORM_FIXTURE in getattr(item, "fixturenames", ())]
    if not shared:
        return
    first = items.index(shared[0])
    rest = [item for item in items if DEMO_PLATFORM_FIXTURE not in getattr(item, "fixturenames", ())]
    items[:] = rest[:first] + shared + rest[first:]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the shared platform after the last test in a row that uses it (the next test, known to xdist's
    worker too, is in another module and does not), instead of keeping 1.6 GB of processes to the session's end."""
    if DEMO_PLATFORM_FIXTURE not in getattr(item, "fixturenames", ()):
        return
    uses = DEMO_PLATFORM_FIXTURE in getattr(nextitem, "fixturenames", ())
    same_module = getattr(nextitem, "module", None) is getattr(item, "module", None)
    if nextitem is None or not (uses or same_module):
        _DEMO.stop()


def pytest_sessionfinish() -> None:
    _DEMO.stop()
