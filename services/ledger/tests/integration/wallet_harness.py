"""Harness of the wallet integration tests: a real ledger HTTP server (uvicorn, so the identity sandbox can
call back), the real identity sandbox process, the real embedded PostgreSQL; `verify` after every test.
The fixtures `identity` and `wallet` are registered by conftest.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.testing.infra import serve_app
from sandboxes.common.testing import SandboxProcess
from services.ledger.app import create_app
from services.ledger.verify import verify

SECRET = "test-identity-secret"
PERSON_IDS = itertools.count(1)
MERCHANT_CODES = ["9144030071526726XG", "91330100716105852F", "91110000600037341L", "91350100M000100Y43"]
CARD = "6222600260001072444"  # Luhn-valid 19-digit card


def resident_id(n: int) -> str:
    """A valid resident ID: a real region and birth date, sequence n, the GB 11643 check character."""
    from services.ledger.wallet.domain.kyc import resident_id_check_char

    first17 = f"44030819900101{n % 1000:03d}"
    return first17 + resident_id_check_char(first17)


def identity_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("identity")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_IDENTITY_SECRET": SECRET,
    }
    with SandboxProcess("sandboxes.identity", port_env="JUHE_SANDBOX_IDENTITY_PORT", env=env) as sandbox:
        yield sandbox


@dataclass
class Wallet:
    client: httpx.AsyncClient
    database_url: str
    identity: httpx.AsyncClient

    async def open_person(self, *, card: str | None = CARD, name: str = "张三") -> str:
        n = next(PERSON_IDS)
        holder_id = f"usr_{n}_{int(time.time() * 1000) % 10**6}"
        body = {
            "holder_id": holder_id,
            "holder_type": "person",
            "name": name,
            "resident_id": resident_id(n),
            "phone": "13800138000",
            **({"bank_card": card} if card else {}),
        }
        r = await self.client.post("/v1/wallet/holders", json=body)
        assert r.status_code == 201, r.text
        return holder_id

    async def verify_person(self, holder_id: str) -> dict[str, Any]:
        r = await self.client.post(f"/v1/wallet/holders/{holder_id}/kyc")
        assert r.status_code == 202, r.text
        assert r.json()["kyc_status"] == "pending"
        return await self.wait_kyc(holder_id)

    async def wait_kyc(self, holder_id: str) -> dict[str, Any]:
        for _ in range(400):  # the sandbox calls back asynchronously
            holder = (await self.client.get(f"/v1/wallet/holders/{holder_id}")).json()
            if holder["kyc_status"] != "pending":
                return dict(holder)
            await asyncio.sleep(0.025)
        raise AssertionError("no KYC verdict arrived")

    async def verified_person(self) -> str:
        holder_id = await self.open_person()
        assert (await self.verify_person(holder_id))["kyc_level"] == 2
        return holder_id

    async def top_up(self, holder_id: str, amount_minor: int, **extra: Any) -> httpx.Response:
        body = {
            "payment_id": f"pay_{holder_id}_{next(PERSON_IDS)}",
            "amount_minor": amount_minor,
            "channel": "wechatpay",
            "channel_fee_minor": 6,
            **extra,
        }
        return await self.client.post(f"/v1/wallet/holders/{holder_id}/top-ups", json=body)

    async def fund_escrow(self, amount_minor: int) -> None:
        """The channel settled money into the escrow account (§3.5), so withdrawals can be paid from it."""
        accounts = []
        for kind, code, flags in (
            ("escrow_bank", "1102", {"credits_must_not_exceed_debits": True}),
            ("channel_clearing", "1101", {}),
        ):
            r = await self.client.post(
                "/v1/accounts",
                json={
                    "holder_id": "platform",
                    "currency": "CNY",
                    "kind": kind,
                    "code": code,
                    "flags": flags,
                    "metadata": {"channel": "wechatpay"} if kind == "channel_clearing" else {},
                    "idempotency_key": f"test:{kind}",
                },
            )
            assert r.status_code in (200, 201), r.text
            accounts.append(r.json()["id"])
        r = await self.client.post(
            "/v1/transfers",
            json={
                "source": "test",
                "idempotency_key": f"fund-{next(PERSON_IDS)}",
                "postings": [
                    {"account_id": accounts[0], "direction": "debit", "amount_minor": amount_minor, "currency": "CNY"},
                    {"account_id": accounts[1], "direction": "credit", "amount_minor": amount_minor, "currency": "CNY"},
                ],
            },
        )
        assert r.status_code == 201, r.text

    async def my_wallet(self, holder_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/wallet/holders/{holder_id}/my-wallet")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def sub(self, holder_id: str, subaccount_type: str, merchant_id: str | None = None) -> dict[str, Any]:
        view = await self.my_wallet(holder_id)
        return next(
            s
            for s in view["subaccounts"]
            if s["subaccount_type"] == subaccount_type and s["merchant_id"] == merchant_id
        )

    async def sql(self, query: str, **params: Any) -> list[dict[str, Any]]:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(text(query), params)).mappings().all()]
        finally:
            await engine.dispose()

    async def execute(self, statement: str, **params: Any) -> None:
        """A committed write behind the service's back (to simulate what a crash leaves)."""
        engine = create_async_engine(self.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement), params)
        finally:
            await engine.dispose()

    async def wallet_events(self, subject: str | None = None) -> list[dict[str, Any]]:
        """The `ledger.wallet` outbox rows (decoded envelopes), oldest first; of one operation if given."""
        rows = await self.sql(
            "SELECT payload FROM outbox WHERE topic = 'ledger.wallet' AND (CAST(:s AS text) IS NULL OR key = :s)"
            " ORDER BY seq",
            s=subject,
        )
        return [json.loads(bytes(r["payload"])) for r in rows]

    async def counts(self) -> dict[str, int]:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                out = {}
                for table in (
                    "transfers",
                    "accounts",
                    "outbox",
                    "wallet_holders",
                    "wallet_operations",
                    "wallet_entitlement_changes",
                    "wallet_bills",
                ):
                    out[table] = int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
                return out
        finally:
            await engine.dispose()


async def running_wallet(identity, migrated_database, service_settings, **overrides: Any) -> AsyncIterator[Wallet]:  # type: ignore[no-untyped-def]
    url = await migrated_database("ledger")
    settings = service_settings(
        "ledger",
        database_url=url,
        expiry_interval_seconds=0.2,
        wallet_identity_base_url=identity.base_url,
        wallet_identity_secret=SECRET,
        **{"wallet_reconcile_interval_seconds": 0.2, **overrides},
    )
    async with (
        serve_app(create_app(settings), name="the ledger") as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        httpx.AsyncClient(base_url=identity.base_url, timeout=10) as identity_client,
    ):
        await identity_client.put("/control/rules", json={})
        yield Wallet(client, url, identity_client)
    assert await verify(url) == {}


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["code"] == code, body
    return dict(body)


async def open_merchant(wallet: Wallet, index: int) -> str:
    merchant_id = f"mch_{index}_{next(PERSON_IDS)}"
    body = {
        "holder_id": merchant_id,
        "holder_type": "merchant",
        "name": f"商户{index}",
        "credit_code": MERCHANT_CODES[index],
        "legal_person": "法人",
        "settlement_account": "6222600260001072444",
    }
    r = await wallet.client.post("/v1/wallet/holders", json=body)
    assert r.status_code == 201, r.text
    return merchant_id
