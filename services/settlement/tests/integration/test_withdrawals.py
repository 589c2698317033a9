"""Wallet withdrawals (docs/contracts.md §3) end to end: a real ledger process (wallet holders verified through the
real identity sandbox), the real bank sandbox, settlement served over HTTP for the bank's callbacks. The
`withdrawal.requested` events are the ledger's own (read from its outbox) and applied through the very
handler the inbox consumer calls."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.embedded import free_port
from libs.common.events import Envelope
from libs.common.outbox_tables import outbox
from libs.common.web import Runtime
from sandboxes.common.testing import SandboxProcess
from services.settlement.app import create_app
from services.settlement.context import settlement_context
from services.settlement.events.consumers import on_wallet_event
from services.settlement.flows.withdrawals import Withdrawals
from services.settlement.store.tables import withdrawals as withdrawals_table
from services.settlement.tests.integration.served import bank_sandbox, eventually, served

IDENTITY_SECRET = "test-identity-secret-for-settlement"
SEQ = itertools.count(1)


def luhn(first15: str) -> str:
    """A Luhn-valid card number from its first digits (the ledger checks cards)."""
    total = 0
    for i, ch in enumerate(reversed(first15)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return first15 + str((10 - total % 10) % 10)


GOOD_CARD, CLOSED_CARD, SLOW_CARD = luhn("622260026000101"), luhn("622260026000102"), luhn("622260026000103")
NAME = "张三"


def resident_id(n: int) -> str:
    """A valid resident ID (GB 11643 check character)."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    first17 = f"44030819900101{n % 1000:03d}"
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from bank_sandbox(
        tmp_path_factory.mktemp("bank"),
        [
            {"account_no": GOOD_CARD, "account_name": NAME},
            {"account_no": CLOSED_CARD, "account_name": NAME, "status": "closed"},
            {"account_no": SLOW_CARD, "account_name": NAME, "mode": "timeout"},
        ],
    )


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("identity")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_IDENTITY_SECRET": IDENTITY_SECRET,
    }
    with SandboxProcess("sandboxes.identity", port_env="JUHE_SANDBOX_IDENTITY_PORT", env=env) as process:
        yield process


@dataclass
class Env:
    client: httpx.AsyncClient  # settlement
    ledger: httpx.AsyncClient
    ledger_db: str
    runtime: Runtime
    bank: SandboxProcess
    bank_client_id: str

    @property
    def withdrawals(self) -> Withdrawals:
        withdrawals: Withdrawals = settlement_context(self.runtime).withdrawals
        return withdrawals

    async def person(self, card: str) -> str:
        """A wallet holder with a verified bank card (KYC through the identity sandbox) and 50,000 in it."""
        n = next(SEQ)
        holder_id = f"usr_s{n}_{int(time.time() * 1000) % 10**6}"
        r = await self.ledger.post(
            "/v1/wallet/holders",
            json={
                "holder_id": holder_id,
                "holder_type": "person",
                "name": NAME,
                "resident_id": resident_id(n),
                "phone": "13800138000",
                "bank_card": card,
            },
        )
        assert r.status_code == 201, r.text
        assert (await self.ledger.post(f"/v1/wallet/holders/{holder_id}/kyc")).status_code == 202

        async def verified() -> bool:
            return bool((await self.ledger.get(f"/v1/wallet/holders/{holder_id}")).json()["kyc_status"] == "verified")

        await eventually(verified, "KYC verdict")
        r = await self.ledger.post(
            f"/v1/wallet/holders/{holder_id}/top-ups",
            json={
                "payment_id": f"pay_{holder_id}",
                "amount_minor": 50_000,
                "channel": "wechatpay",
                "channel_fee_minor": 0,
            },
        )
        assert r.status_code == 201, r.text
        return holder_id

    async def withdraw(self, holder_id: str, amount_minor: int) -> str:
        r = await self.ledger.post(
            f"/v1/wallet/holders/{holder_id}/withdrawals",
            json={
                "withdrawal_id": f"wd_{holder_id}_{next(SEQ)}",
                "amount_minor": amount_minor,
                "fee_minor": 10,
            },
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def requested_event(self, operation_id: str) -> Envelope:
        """The ledger's own `withdrawal.requested` for the operation, from its outbox."""
        engine = create_async_engine(self.ledger_db)
        try:
            async with engine.connect() as conn:
                rows = (
                    (
                        await conn.execute(
                            text("SELECT payload FROM outbox WHERE event_type = 'withdrawal.requested' AND key = :k"),
                            {"k": operation_id},
                        )
                    )
                    .scalars()
                    .all()
                )
        finally:
            await engine.dispose()
        [payload] = rows
        return Envelope.from_bytes(bytes(payload))

    async def deliver(self, event: Envelope) -> None:
        async with self.runtime.uow.begin() as tx:
            await on_wallet_event(tx, event)

    async def operation(self, operation_id: str) -> dict[str, Any]:
        return dict((await self.ledger.get(f"/v1/wallet/operations/{operation_id}")).json())

    async def row(self, operation_id: str) -> dict[str, Any]:
        return await self.withdrawals.read(operation_id)

    async def finished(self, operation_id: str) -> dict[str, Any]:
        async def done() -> bool:
            return (await self.row(operation_id))["status"] != "pending"

        await eventually(done, f"withdrawal {operation_id} finished")
        return await self.row(operation_id)


@pytest.fixture
async def env(
    bank: SandboxProcess,
    identity: SandboxProcess,
    migrated_database: Any,
    service_processes: Any,
    service_settings: Any,
    juhe_infra: Any,
) -> AsyncIterator[Env]:
    ledger_db = await migrated_database("ledger")
    ledger = service_processes(
        "ledger",
        {
            "database_url": ledger_db,
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "role": "api",
            "wallet_identity_base_url": identity.base_url,
            "wallet_identity_secret": IDENTITY_SECRET,
        },
    )
    async with httpx.AsyncClient() as plain:
        creds = (await plain.post(bank.base_url + "/control/clients", json={})).json()
    port = free_port()
    settings = service_settings(
        "settlement",
        database_url=await migrated_database("settlement"),
        ledger_url=ledger.base_url,
        role="api",
        port=port,
        bank_url=bank.base_url,
        bank_client_id=creds["client_id"],
        bank_secret=creds["secret"],
        public_base_url=f"http://127.0.0.1:{port}",
        payout_poll_seconds=0.0,
    )
    app = create_app(settings)
    async with served(app, port) as client, httpx.AsyncClient(base_url=ledger.base_url, timeout=30) as ledger_client:
        await fund_escrow(ledger_client)
        yield Env(client, ledger_client, ledger_db, app.state.runtime, bank, creds["client_id"])


async def fund_escrow(ledger: httpx.AsyncClient) -> None:
    """The channels settled money into the escrow account (§3.5): withdrawals are paid from it."""
    ids = []
    for kind, code, flags in (
        ("escrow_bank", "1102", {"credits_must_not_exceed_debits": True}),
        ("channel_clearing", "1101", {}),
    ):
        body = {
            "holder_id": "platform",
            "currency": "CNY",
            "kind": kind,
            "code": code,
            "flags": flags,
            "idempotency_key": f"t:{kind}",
        }
        r = await ledger.post("/v1/accounts", json=body)
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["id"])
    r = await ledger.post(
        "/v1/transfers",
        json={
            "source": "test",
            "idempotency_key": "fund",
            "postings": [
                {"account_id": ids[0], "direction": "debit", "amount_minor": 1_000_000, "currency": "CNY"},
                {"account_id": ids[1], "direction": "credit", "amount_minor": 1_000_000, "currency": "CNY"},
            ],
        },
    )
    assert r.status_code == 201, r.text


async def test_withdrawal_paid_posts_the_hold_once(env: Env) -> None:
    holder = await env.person(GOOD_CARD)
    op_id = await env.withdraw(holder, 20_000)
    event = await env.requested_event(op_id)
    await env.deliver(event)
    await env.deliver(dataclasses.replace(event, id="evt_redelivered"))  # a repeat: one withdrawal
    assert await env.withdrawals.round() == 1
    row = await env.finished(op_id)  # the bank's signed callback brought the outcome
    assert (row["status"], row["bank_status"], row["ledger_outcome"]) == ("succeeded", "SUCCEEDED", "posted")
    assert (row["account_no"], row["account_name"], row["amount_minor"]) == (GOOD_CARD, NAME, 20_000)
    assert (await env.operation(op_id))["status"] == "posted"
    # repeats of the outcome (a late poll, the callback again) change nothing
    assert await env.withdrawals.apply_outcome(op_id, "SUCCEEDED", None) is False
    assert await env.withdrawals.round() == 0
    published = await published_types(env, op_id)
    assert published == ["withdrawal.finished"]
    # the platform's view
    one = (await env.client.get(f"/v1/settlement/withdrawals/{op_id}")).json()
    assert (one["status"], one["holder_id"], one["fee_minor"]) == ("succeeded", holder, 10)
    listed = (await env.client.get("/v1/settlement/withdrawals", params={"holder_id": holder})).json()
    assert [w["operation_id"] for w in listed["data"]] == [op_id] and listed["next_cursor"] is None
    missing = await env.client.get("/v1/settlement/withdrawals/wop_none")
    assert missing.status_code == 404 and missing.json()["code"] == "withdrawal_not_found"
    mine = await env.client.get(f"/v1/settlement/withdrawals/{op_id}", headers={"X-Juhe-Merchant-Id": "mch_1"})
    assert mine.status_code == 403


async def test_bank_failure_voids_the_hold_and_the_user_is_whole(env: Env) -> None:
    holder = await env.person(CLOSED_CARD)
    before = (await env.ledger.get(f"/v1/wallet/holders/{holder}/my-wallet")).json()
    op_id = await env.withdraw(holder, 5_000)
    await env.deliver(await env.requested_event(op_id))
    await env.withdrawals.round()
    row = await env.finished(op_id)
    assert (row["status"], row["failure_code"], row["ledger_outcome"]) == ("failed", "ACCOUNT_CLOSED", "voided")
    assert (await env.operation(op_id))["status"] == "voided"
    after = (await env.ledger.get(f"/v1/wallet/holders/{holder}/my-wallet")).json()
    assert balance_of(after) == balance_of(before)


async def test_crash_after_the_bank_took_it_pays_once(env: Env) -> None:
    """The bank accepted the payout but settlement crashed before recording it: the next round submits again
    under the same payout_no and the bank answers the same payout; the outcome posts the hold once."""
    holder = await env.person(SLOW_CARD)
    op_id = await env.withdraw(holder, 7_000)
    await env.deliver(await env.requested_event(op_id))
    await env.withdrawals.round()
    first = await env.row(op_id)
    assert first["status"] == "pending" and first["bank_ref"]
    async with env.runtime.uow.begin() as tx:  # the crash: the bank's answer was never stored
        await tx.conn.execute(update(withdrawals_table).values(submitted_at=None, bank_ref=None))
    await env.withdrawals.round()
    assert (await env.row(op_id))["bank_ref"] == first["bank_ref"]
    async with httpx.AsyncClient(base_url=env.bank.base_url) as bank:
        r = await bank.post(f"/control/payouts/{env.bank_client_id}/{op_id}/complete", json={"status": "SUCCEEDED"})
        assert r.status_code == 200, r.text
    row = await env.finished(op_id)
    assert (row["status"], row["ledger_outcome"]) == ("succeeded", "posted")
    assert (await env.operation(op_id))["status"] == "posted"


async def test_a_hold_no_longer_pending_is_never_paid(env: Env) -> None:
    holder = await env.person(GOOD_CARD)
    op_id = await env.withdraw(holder, 1_000)
    assert (await env.ledger.post(f"/v1/wallet/operations/{op_id}/void")).status_code == 200
    await env.deliver(await env.requested_event(op_id))
    await env.withdrawals.round()
    row = await env.row(op_id)
    assert (row["status"], row["failure_code"], row["submitted_at"]) == ("failed", "hold_voided", None)
    async with httpx.AsyncClient(base_url=env.bank.base_url) as bank:
        assert (
            await bank.post(f"/control/payouts/{env.bank_client_id}/{op_id}/complete", json={"status": "SUCCEEDED"})
        ).status_code == 404


def balance_of(view: dict[str, Any]) -> tuple[int, int]:
    """(posted, available) of the wallet's balance sub-accounts."""
    subs = [s for s in view["subaccounts"] if s["subaccount_type"] == "balance"]
    assert subs, view
    return (
        sum(int(s["balances"]["posted_balance_minor"]) for s in subs),
        sum(int(s["balances"]["available_balance_minor"]) for s in subs),
    )


async def published_types(env: Env, subject: str) -> list[str]:
    async with env.runtime.uow.read() as conn:
        rows = await conn.execute(select(outbox.c.event_type).where(outbox.c.key == subject))
        return [str(t) for t in rows.scalars()]


async def test_callback_poll_and_repeats_racing_finish_once(env: Env) -> None:
    holder = await env.person(SLOW_CARD)
    op_id = await env.withdraw(holder, 3_000)
    await env.deliver(await env.requested_event(op_id))
    await env.withdrawals.round()
    async with httpx.AsyncClient(base_url=env.bank.base_url) as bank:  # the bank decides: its callback races
        r = await bank.post(f"/control/payouts/{env.bank_client_id}/{op_id}/complete", json={"status": "SUCCEEDED"})
        assert r.status_code == 200, r.text
    won = await asyncio.gather(
        *(env.withdrawals.apply_outcome(op_id, "SUCCEEDED", None) for _ in range(4)),
        env.withdrawals.step(op_id),
        env.withdrawals.step(op_id),
    )
    row = await env.finished(op_id)
    assert (row["status"], row["ledger_outcome"]) == ("succeeded", "posted")
    assert sum(1 for w in won if w is True) <= 1
    assert await published_types(env, op_id) == ["withdrawal.finished"]
    assert (await env.operation(op_id))["status"] == "posted"
