"""Fixtures of the ledger integration tests: a fresh migrated database and the ledger app on it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from sandboxes.common.testing import SandboxProcess
from services.ledger.app import create_app
from services.ledger.tests.integration.wallet_harness import Wallet, identity_sandbox, running_wallet
from services.ledger.verify import verify

_keys = itertools.count(1)


@dataclass
class Ledger:
    client: httpx.AsyncClient
    database_url: str

    async def open(self, kind: str = "user_wallet", code: str = "2301", currency: str = "CNY", **extra: Any) -> str:
        body = {"holder_id": extra.pop("holder_id", "h_1"), "currency": currency, "kind": kind, "code": code, **extra}
        r = await self.client.post("/v1/accounts", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def wallet(self) -> str:
        return await self.open(flags={"debits_must_not_exceed_credits": True})

    async def transfer(
        self, debit: str, credit: str, amount_minor: int, *, key: str | None = None, currency: str = "CNY", **extra: Any
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/transfers", json=body(debit, credit, amount_minor, key=key, currency=currency, **extra)
        )

    async def balances(self, account_id: str) -> dict[str, int]:
        r = await self.client.get(f"/v1/accounts/{account_id}")
        assert r.status_code == 200, r.text
        return dict(r.json()["balances"])

    async def count(self, table: str) -> int:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
        finally:
            await engine.dispose()

    async def events(self) -> list[tuple[str, str]]:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT event_type, key FROM outbox ORDER BY seq"))).all()
                return [(r[0], r[1]) for r in rows]
        finally:
            await engine.dispose()

    async def assert_verified(self) -> None:
        assert await verify(self.database_url) == {}


def body(
    debit: str, credit: str, amount_minor: int, *, key: str | None = None, currency: str = "CNY", **extra: Any
) -> dict[str, Any]:
    return {
        "source": extra.pop("source", "test"),
        "idempotency_key": key or f"k-{next(_keys)}",
        "postings": [
            {"account_id": debit, "direction": "debit", "amount_minor": amount_minor, "currency": currency},
            {"account_id": credit, "direction": "credit", "amount_minor": amount_minor, "currency": currency},
        ],
        **extra,
    }


@pytest.fixture
async def ledger_factory(migrated_database, service_settings, running_apps) -> Callable[..., Any]:  # type: ignore[no-untyped-def]
    """`await ledger_factory(database_url=None, **settings)` → a running ledger app (another replica if same URL)."""

    async def start(database_url: str | None = None, **overrides: Any) -> Ledger:
        url = database_url or await migrated_database("ledger")
        settings = service_settings("ledger", database_url=url, expiry_interval_seconds=0.2, **overrides)
        client = await running_apps(create_app(settings))
        return Ledger(client, url)

    return start


@pytest.fixture
async def ledger(ledger_factory: Callable[..., Any]) -> Ledger:
    ledger: Ledger = await ledger_factory()
    return ledger


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The identity sandbox process (KYC verdicts, signed callbacks)."""
    yield from identity_sandbox(tmp_path_factory)


@pytest.fixture
async def wallet(identity, migrated_database, service_settings) -> AsyncIterator[Wallet]:  # type: ignore[no-untyped-def]
    """A real ledger HTTP server on a fresh database, wired to the identity sandbox; verified at the end."""
    async for running in running_wallet(identity, migrated_database, service_settings):
        yield running
