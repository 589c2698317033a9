"""Payouts end to end: real ledger process, real bank sandbox (signed protocol, callbacks), settlement
served by uvicorn so the bank can call it back. Every outcome posted per §3.6; the ledger verifies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from libs.common.embedded import free_port
from libs.common.testing.infra import serve_app
from sandboxes.common.testing import SandboxProcess
from services.settlement.app import create_app
from services.settlement.clients.bank import BankClient
from services.settlement.clients.ledger import LedgerClient
from services.settlement.context import settlement_context
from services.settlement.flows.payouts import PayoutDraft, Payouts

GOOD = {"account_no": "6222000011112222", "account_name": "Shop P"}
HEADERS = {"X-Juhe-Merchant-Id": "mch_p"}
WAIT_SECONDS_MAX = 15.0


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("bank")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_BANK_PROCESS_SECONDS": "0.1",
    }
    with SandboxProcess("sandboxes.bank", port_env="JUHE_SANDBOX_BANK_PORT", env=env) as process:
        for account in (
            GOOD,
            {"account_no": "6222000033334444", "account_name": "Shop P", "status": "closed"},
            {"account_no": "6222000055556666", "account_name": "Shop P", "mode": "timeout"},
        ):
            httpx.post(process.base_url + "/control/accounts", json=account).raise_for_status()
        yield process


@dataclass
class Env:
    client: httpx.AsyncClient
    payouts: Payouts
    ledger: LedgerClient
    ledger_db: str
    bank: SandboxProcess
    client_id: str

    async def balance(self, holder: str, kind: str) -> int:
        account = await self.ledger.account_id(holder, kind, "CNY")
        return int((await self.ledger.balance(account))["balances"]["posted_balance_minor"])

    async def wait_status(self, payout_id: str, status: str) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
        while True:
            row = (await self.client.get(f"/v1/payouts/{payout_id}", headers=HEADERS)).json()
            if row["status"] == status:
                return dict(row)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"payout {payout_id} is {row['status']}, wanted {status}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def env(
    bank: SandboxProcess, migrated_database: Any, service_processes: Any, service_settings: Any, juhe_infra: Any
) -> AsyncIterator[Env]:
    ledger_db = await migrated_database("ledger")
    ledger = service_processes(
        "ledger", {"database_url": ledger_db, "kafka_bootstrap_servers": juhe_infra.bootstrap, "role": "api"}
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
    async with (
        serve_app(app, port=port, name="settlement") as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
    ):
        runtime = app.state.runtime
        context = settlement_context(runtime)
        env = Env(client, context.payouts, context.ledger, ledger_db, bank, creds["client_id"])
        await fund(env)
        yield env


async def fund(env: Env) -> None:
    """10,000 settled for mch_p (as a settlement batch would) and 10,000 in escrow (a channel settled)."""
    ledger = env.ledger
    pending = await ledger.account_id("mch_p", "merchant_pending", "CNY")
    settled = await ledger.account_id("mch_p", "merchant_settled", "CNY")
    escrow = await ledger.account_id("platform", "escrow_bank", "CNY")
    clearing = await ledger.account_id("platform", "channel_clearing", "CNY")
    for key, debit, credit in (("test:settle", pending, settled), ("test:channel", escrow, clearing)):
        await ledger.post_transfer(
            idempotency_key=key,
            postings=[
                {"account_id": debit, "direction": "debit", "amount_minor": 10_000, "currency": "CNY"},
                {"account_id": credit, "direction": "credit", "amount_minor": 10_000, "currency": "CNY"},
            ],
        )


def body(amount: int, key: str, account: dict[str, str] = GOOD) -> dict[str, Any]:
    return {"amount_minor": amount, "currency": "CNY", "idempotency_key": key, **account}


async def test_payouts_outcomes_posted_once(env: Env) -> None:
    # above the settled balance: problem+json, nothing recorded
    r = await env.client.post("/v1/payouts", json=body(10_001, "k0"), headers=HEADERS)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "payout_exceeds_settled_balance" and r.json()["available_minor"] == 10_000

    # a good payout: instructed (2202 → 2203), the bank's signed callback settles it (2203 → escrow)
    r = await env.client.post("/v1/payouts", json=body(3000, "k1"), headers=HEADERS)
    assert r.status_code == 201, r.text
    paid = r.json()
    again = await env.client.post("/v1/payouts", json=body(3000, "k1"), headers=HEADERS)
    assert again.status_code == 200 and again.json()["payout_id"] == paid["payout_id"]
    other = await env.client.post("/v1/payouts", json=body(3001, "k1"), headers=HEADERS)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    done = await env.wait_status(paid["payout_id"], "succeeded")  # by the callback: no worker runs here
    assert done["bank_status"] == "SUCCEEDED" and done["outcome_transfer_id"]
    assert await env.payouts.apply_outcome(paid["payout_id"], "SUCCEEDED", None) is False  # a repeat: no-op
    assert await env.balance("mch_p", "merchant_settled") == 7000
    assert await env.balance("mch_p", "merchant_payable") == 0
    assert await env.balance("platform", "escrow_bank") == 7000

    # a closed account: failed, the instruction is reversed (2203 → 2202)
    r = await env.client.post(
        "/v1/payouts", json=body(2000, "k2", {**GOOD, "account_no": "6222000033334444"}), headers=HEADERS
    )
    failed = await env.wait_status(r.json()["payout_id"], "failed")
    assert failed["failure_code"] == "ACCOUNT_CLOSED"
    assert await env.balance("mch_p", "merchant_settled") == 7000

    # the bank does not decide (timeout): the payout stays pending with the money in 2203 until it does
    r = await env.client.post(
        "/v1/payouts", json=body(1000, "k3", {**GOOD, "account_no": "6222000055556666"}), headers=HEADERS
    )
    slow = r.json()["payout_id"]
    await env.payouts.round()
    assert (await env.client.get(f"/v1/payouts/{slow}", headers=HEADERS)).json()["status"] == "pending"
    assert await env.balance("mch_p", "merchant_payable") == 1000
    async with httpx.AsyncClient() as plain:  # the bank decides late; its callback brings the outcome
        await plain.post(
            f"{env.bank.base_url}/control/payouts/{env.client_id}/{slow}/complete",
            json={"status": "FAILED", "failure_code": "BANK_REJECTED"},
        )
    await env.wait_status(slow, "failed")
    await env.payouts.round()  # a poll after the callback: nothing more
    assert await env.balance("mch_p", "merchant_settled") == 7000
    assert await env.balance("mch_p", "merchant_payable") == 0

    # the merchant's list, newest first, cursor-paged; the platform's list of all merchants
    listed = (await env.client.get("/v1/payouts", headers=HEADERS)).json()
    assert [p["payout_id"] for p in listed["data"]] == sorted(
        [paid["payout_id"], failed["payout_id"], slow], reverse=True
    )
    first = (await env.client.get("/v1/payouts", params={"limit": 2}, headers=HEADERS)).json()
    rest = (await env.client.get("/v1/payouts", params={"cursor": first["next_cursor"]}, headers=HEADERS)).json()
    assert [p["payout_id"] for p in first["data"] + rest["data"]] == [p["payout_id"] for p in listed["data"]]
    only_failed = (await env.client.get("/v1/payouts", params={"status": "failed"}, headers=HEADERS)).json()
    assert {p["payout_id"] for p in only_failed["data"]} == {failed["payout_id"], slow}
    assert (await env.client.get("/v1/payouts", headers={"X-Juhe-Merchant-Id": "mch_x"})).json()["data"] == []
    everyone = (await env.client.get("/v1/settlement/payouts")).json()["data"]
    assert len(everyone) == 3
    assert (await env.client.get("/v1/settlement/payouts", headers=HEADERS)).status_code == 403

    # another merchant cannot see it; a forged callback is refused
    other_merchant = await env.client.get(f"/v1/payouts/{slow}", headers={"X-Juhe-Merchant-Id": "mch_x"})
    assert other_merchant.status_code == 404 and other_merchant.json()["code"] == "payout_not_found"
    forged = await env.client.post(
        "/v1/notify/bank", json={"payout_no": slow, "status": "SUCCEEDED"}, headers={"X-Bank-Signature": "t=1,v1=00"}
    )
    assert forged.status_code == 401 and forged.json()["code"] == "invalid_signature"
    verify_ledger(env.ledger_db)


async def test_concurrent_payouts_never_exceed_settled(env: Env) -> None:
    results = await asyncio.gather(
        *(env.client.post("/v1/payouts", json=body(4000, f"c{i}"), headers=HEADERS) for i in range(4))
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 2 and codes.count(422) == 2, [r.text for r in results]
    for r in results:
        if r.status_code == 201:
            await env.wait_status(r.json()["payout_id"], "succeeded")
    assert await env.balance("mch_p", "merchant_settled") == 2000
    assert await env.balance("platform", "escrow_bank") == 2000
    verify_ledger(env.ledger_db)


async def test_payout_attempts_max_ends_it_failed_and_releases_the_funds(env: Env) -> None:
    """`payout_attempts_max` is enforced: a bank that never answers ends the payout `failed`
    (attempts_exhausted) after that many failed steps, the instructed amount back in 2202 (§3.6 failure)."""
    settings = env.payouts.settings.model_copy(update={"payout_attempts_max": 3, "payout_poll_seconds": 0.0})
    dead_bank = BankClient.build("http://127.0.0.1:9", "nobody", "nothing", timeout_seconds=2, skew_seconds_max=300)
    payouts = Payouts(env.payouts.uow, env.ledger, dead_bank, settings)
    try:
        draft = PayoutDraft(2500, "CNY", GOOD["account_no"], GOOD["account_name"], "give-up")
        payout, created = await payouts.request("mch_p", draft)  # instructed; its first bank step fails
        assert created and payout["status"] == "pending" and payout["attempt_count"] == 1
        assert await env.balance("mch_p", "merchant_payable") == 2500
        for _ in range(10):  # bounded: a payout that retries forever stays pending through all of them
            if (await payouts.read(payout["payout_id"]))["status"] != "pending":
                break
            await payouts.round()
        final = await payouts.read(payout["payout_id"])
        assert final["status"] == "failed" and final["failure_code"] == "attempts_exhausted", final
        assert final["outcome_transfer_id"] and final["attempt_count"] == 2  # the 3rd failed step gave up
        await payouts.round()  # nothing more happens to a finished payout
    finally:
        await dead_bank.aclose()
    assert await env.balance("mch_p", "merchant_settled") == 10_000
    assert await env.balance("mch_p", "merchant_payable") == 0
    listed = (await env.client.get("/v1/payouts", params={"status": "failed"}, headers=HEADERS)).json()["data"]
    assert [p["failure_code"] for p in listed] == ["attempts_exhausted"]
    verify_ledger(env.ledger_db)


def verify_ledger(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.ledger.verify", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_payout_above_the_threshold_waits_for_an_operator(env: Env) -> None:
    """Maker-checker: at or above `payout_approval_threshold_minor` a payout is held (`pending_approval`, nothing
    moved, the worker leaves it) until an operator approves it (then paid as any payout) or rejects it (final,
    nothing moved); each decision once, by whom recorded; merchants cannot decide."""
    env.payouts.settings = env.payouts.settings.model_copy(update={"payout_approval_threshold_minor": 5000})
    below = (await env.client.post("/v1/payouts", json=body(4000, "t1"), headers=HEADERS)).json()
    await env.wait_status(below["payout_id"], "succeeded")  # under the threshold: paid at once

    r = await env.client.post("/v1/payouts", json=body(5000, "t2"), headers=HEADERS)
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    held = r.json()
    assert held["instruction_transfer_id"] is None and held["decided_by"] is None
    again = await env.client.post("/v1/payouts", json=body(5000, "t2"), headers=HEADERS)
    assert again.status_code == 200 and again.json()["payout_id"] == held["payout_id"]
    await env.payouts.round()  # the worker leaves a held payout alone
    assert (await env.client.get(f"/v1/payouts/{held['payout_id']}", headers=HEADERS)).json()["status"] == (
        "pending_approval"
    )
    assert await env.balance("mch_p", "merchant_settled") == 6000
    queue = (await env.client.get("/v1/settlement/payouts", params={"status": "pending_approval"})).json()["data"]
    assert [p["payout_id"] for p in queue] == [held["payout_id"]]

    approve = f"/v1/settlement/payouts/{held['payout_id']}/approve"
    assert (await env.client.post(approve, json={"actor": "ops@juhe.test"}, headers=HEADERS)).status_code == 403
    assert (await env.client.post(approve, json={})).status_code == 422
    r = await env.client.post(approve, json={"actor": "ops@juhe.test"})
    assert r.status_code == 200 and r.json()["decided_by"] == "ops@juhe.test", r.text
    await env.wait_status(held["payout_id"], "succeeded")
    assert await env.balance("mch_p", "merchant_settled") == 1000
    twice = await env.client.post(approve, json={"actor": "other@juhe.test"})
    assert twice.status_code == 409 and twice.json()["code"] == "payout_not_awaiting_approval"
    unknown = await env.client.post("/v1/settlement/payouts/po_nosuchpayout/approve", json={"actor": "ops@juhe.test"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "payout_not_found"

    env.payouts.settings = env.payouts.settings.model_copy(update={"payout_approval_threshold_minor": 500})
    rejected = (await env.client.post("/v1/payouts", json=body(800, "t3"), headers=HEADERS)).json()
    reject = f"/v1/settlement/payouts/{rejected['payout_id']}/reject"
    no_reason = await env.client.post(reject, json={"actor": "ops@juhe.test"})
    assert no_reason.status_code == 422 and no_reason.json()["code"] == "validation_failed"
    r = await env.client.post(reject, json={"actor": "ops@juhe.test", "reason": "Account not verified"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["decision_reason"], r.json()["instruction_transfer_id"]) == (
        "rejected",
        "Account not verified",
        None,
    )
    late = await env.client.post(f"/v1/settlement/payouts/{rejected['payout_id']}/approve", json={"actor": "x"})
    assert late.status_code == 409
    assert (
        await env.balance("mch_p", "merchant_settled") == 1000 and await env.balance("mch_p", "merchant_payable") == 0
    )
    verify_ledger(env.ledger_db)
