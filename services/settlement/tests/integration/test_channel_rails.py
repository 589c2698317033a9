"""Payout rails through the cashier: a wallet withdrawal to WeChat change (confirmed by the user; left unconfirmed
until it expires), a merchant payout to an Alipay account and wallet withdrawals to Alipay accounts (the holder's
own name paid, another's refused); withdrawals are asked through the ledger's public request (`rail`, `payee`).
Everything real: the ledger process (wallet KYC through the identity sandbox), the cashier served on a port with the
WeChat Pay and Alipay sandboxes behind it, settlement served on a port (the cashier nudges it after a verified WeChat
transfer callback)."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.embedded import free_port
from libs.common.events import Envelope
from libs.common.testing.infra import serve_app
from sandboxes.common.testing import SandboxProcess
from services.cashier.app import create_app as create_cashier_app
from services.settlement.app import create_app
from services.settlement.clients.rails import transfer_no
from services.settlement.context import settlement_context
from services.settlement.events.consumers import on_wallet_event
from services.settlement.flows.withdrawals import Withdrawals
from services.settlement.tests.integration.served import eventually, served
from services.settlement.tests.integration.test_withdrawals import (
    IDENTITY_SECRET,
    NAME,
    fund_escrow,
    luhn,
    resident_id,
)

PAYING_MERCHANT = "mch_wallet"  # the platform's merchant at the channels (settlement's channel_payout_merchant_id)
WECHAT_MCHID = "1900000300"
WECHAT_APPID = "wx8888888888888888"
CARD = luhn("622260026000201")
ALIPAY_PAYEE = "2088102177890001"
UNKNOWN_PAYEE = "2088000000009999"
HOLDER_ALIPAY = "2088102177890002"  # the wallet holder's own Alipay account (same real name)
SOMEONE_ELSES_ALIPAY = "2088102177890003"  # an account under another real name
SEQ = itertools.count(100)
CONFIRM_SECONDS = 3.0  # settlement cancels a WeChat transfer still unconfirmed after this (normally 23 h)


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SandboxProcess]]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("rails")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_IDENTITY_SECRET": IDENTITY_SECRET,
    }
    with (
        SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env) as wechat,
        SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env) as alipay,
        SandboxProcess("sandboxes.identity", port_env="JUHE_SANDBOX_IDENTITY_PORT", env=env) as identity,
    ):
        yield {"wechatpay": wechat, "alipay": alipay, "identity": identity}


@dataclass
class Env:
    settlement: httpx.AsyncClient
    ledger: httpx.AsyncClient
    ledger_db: str
    runtime: Any
    wechat: SandboxProcess

    @property
    def withdrawals(self) -> Withdrawals:
        withdrawals: Withdrawals = settlement_context(self.runtime).withdrawals
        return withdrawals

    async def ledger_sql(self, sql: str, **params: Any) -> list[Any]:
        engine = create_async_engine(self.ledger_db)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql), params)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    async def verified_user(self) -> str:
        n = next(SEQ)
        holder_id = f"usr_r{n}_{int(time.time() * 1000) % 10**9}"
        r = await self.ledger.post(
            "/v1/wallet/holders",
            json={
                "holder_id": holder_id,
                "holder_type": "person",
                "name": NAME,
                "resident_id": resident_id(n),
                "phone": "13800138000",
                "bank_card": CARD,
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

    async def withdraw_to_wechat(self, holder_id: str, openid: str, amount_minor: int) -> str:
        operation_id = await self.withdraw(holder_id, "wechat_change", {"openid": openid}, amount_minor)
        operation = (await self.ledger.get(f"/v1/wallet/operations/{operation_id}")).json()
        assert operation["details"]["payout"] == {
            "rail": "wechat_change",
            "payee": openid,
            "payee_type": "openid",
            "payee_name": NAME,
        }  # the holder's verified name, sent to WeChat
        return operation_id

    async def withdraw(self, holder_id: str, rail: str, payee: dict[str, str], amount_minor: int) -> str:
        """A withdrawal the user sends to their WeChat change or Alipay account through the ledger's public
        request (`rail`, `payee`); the ledger's own `withdrawal.requested` then goes through settlement's
        consumer handler."""
        r = await self.ledger.post(
            f"/v1/wallet/holders/{holder_id}/withdrawals",
            json={
                "withdrawal_id": f"wd_{holder_id}",
                "amount_minor": amount_minor,
                "fee_minor": 0,
                "rail": rail,
                "payee": payee,
            },
        )
        assert r.status_code == 201, r.text
        operation_id = str(r.json()["id"])
        [payload] = [
            row[0]
            for row in await self.ledger_sql(
                "SELECT payload FROM outbox WHERE event_type = 'withdrawal.requested' AND key = :k", k=operation_id
            )
        ]
        async with self.runtime.uow.begin() as tx:
            await on_wallet_event(tx, Envelope.from_bytes(bytes(payload)))
        return operation_id

    async def finished(self, operation_id: str) -> dict[str, Any]:
        async def done() -> bool:
            return (await self.withdrawals.read(operation_id))["status"] != "pending"

        await eventually(done, f"withdrawal {operation_id} finished")
        return await self.withdrawals.read(operation_id)


@pytest.fixture
async def env(
    sandboxes: dict[str, SandboxProcess],
    migrated_database: Any,
    service_processes: Any,
    service_settings: Any,
    juhe_infra: Any,
    platform_topics: str,
) -> AsyncIterator[Env]:
    wechat, alipay = sandboxes["wechatpay"], sandboxes["alipay"]
    ledger_db = await migrated_database("ledger")
    ledger = service_processes(
        "ledger",
        {
            "database_url": ledger_db,
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "role": "api",
            "wallet_identity_base_url": sandboxes["identity"].base_url,
            "wallet_identity_secret": IDENTITY_SECRET,
        },
    )
    settlement_port, cashier_port = free_port(), free_port()
    cashier_app = create_cashier_app(
        service_settings(
            "cashier",
            database_url=await migrated_database("cashier"),
            port=cashier_port,
            public_base_url=f"http://127.0.0.1:{cashier_port}",
            settlement_url=f"http://127.0.0.1:{settlement_port}",
        )
    )
    settlement_app = create_app(
        service_settings(
            "settlement",
            database_url=await migrated_database("settlement"),
            ledger_url=ledger.base_url,
            role="api",
            port=settlement_port,
            public_base_url=f"http://127.0.0.1:{settlement_port}",
            payout_poll_seconds=0.0,
            cashier_url=f"http://127.0.0.1:{cashier_port}",
            channel_payout_merchant_id=PAYING_MERCHANT,
            transfer_confirm_seconds=CONFIRM_SECONDS,
        )
    )
    async with (
        serve_app(cashier_app, port=cashier_port, name="cashier") as cashier_url,
        httpx.AsyncClient(base_url=cashier_url, timeout=30) as cashier,
        served(settlement_app, settlement_port) as settlement,
        httpx.AsyncClient(base_url=ledger.base_url, timeout=30) as ledger_client,
    ):
        await _paying_merchant(cashier, wechat, alipay)
        await fund_escrow(ledger_client)
        yield Env(settlement, ledger_client, ledger_db, settlement_app.state.runtime, wechat)


async def _paying_merchant(cashier: httpx.AsyncClient, wechat: SandboxProcess, alipay: SandboxProcess) -> None:
    """The platform's merchant at both channels: WeChat Pay (商家转账) and an Alipay app in certificate mode
    (Alipay's fund APIs need it), configured in the cashier like any merchant's channels."""
    async with httpx.AsyncClient(timeout=10) as plain:
        m = (
            await plain.post(
                wechat.base_url + "/control/merchants",
                json={"mchid": WECHAT_MCHID, "appid": WECHAT_APPID, "generate_key_pair": True},
            )
        ).json()
        app = (await plain.post(alipay.base_url + "/control/apps", json={"cert_mode": True})).json()
        for identity, exists, name in (
            (ALIPAY_PAYEE, True, "Shop P"),
            (UNKNOWN_PAYEE, False, "Shop P"),
            (HOLDER_ALIPAY, True, NAME),
            (SOMEONE_ELSES_ALIPAY, True, "李四"),
        ):
            payee = await plain.put(
                alipay.base_url + "/control/payees", json={"identity": identity, "exists": exists, "name": name}
            )
            assert payee.status_code == 200, payee.text
    assert (await cashier.put(f"/v1/admin/merchants/{PAYING_MERCHANT}", json={})).status_code == 200
    configs = {
        "wechatpay": {
            "base_url": wechat.base_url,
            "mchid": WECHAT_MCHID,
            "appid": WECHAT_APPID,
            "merchant_private_key_pem": m["merchant_private_key_pem"],
            "merchant_cert_serial": m["merchant_cert_serial"],
            "platform_public_key_pem": m["platform_public_key_pem"],
            "platform_public_key_id": m["platform_public_key_id"],
            "apiv3_key": m["apiv3_key"],
        },
        "alipay": {
            "gateway_url": alipay.base_url + "/gateway.do",
            "app_id": app["app_id"],
            "app_private_key_pem": app["app_private_key_pem"],
            "seller_id": app["seller_id"],
            **{k: app[k] for k in ("app_cert_pem", "alipay_cert_pem", "alipay_root_cert_pem")},
        },
    }
    for priority, (channel, config) in enumerate(configs.items(), start=1):
        r = await cashier.put(
            f"/v1/admin/merchants/{PAYING_MERCHANT}/channels/{channel}", json={"priority": priority, "config": config}
        )
        assert r.status_code == 200, r.text


async def test_a_withdrawal_to_wechat_change_paid_once_the_user_confirms(env: Env) -> None:
    holder = await env.verified_user()
    operation_id = await env.withdraw_to_wechat(holder, "o_rails_user_confirms", 2_000)
    await env.withdrawals.step(operation_id)
    waiting = await env.withdrawals.read(operation_id)
    assert (waiting["status"], waiting["rail"], waiting["bank_status"]) == ("pending", "wechat_change", "WAITING_USER")
    assert waiting["user_action"]["package_info"]  # what the user's WeChat needs to confirm receipt
    assert waiting["account_no"] == "o_rails_user_confirms"

    async with httpx.AsyncClient(base_url=env.wechat.base_url, timeout=10) as wechat:
        confirmed = await wechat.post(f"/control/transfer-bills/{transfer_no(operation_id)}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    # WeChat calls the cashier back; the cashier verifies it and nudges settlement, which asks again and posts.
    done = await env.finished(operation_id)
    assert (done["status"], done["ledger_outcome"], done["bank_status"]) == ("succeeded", "posted", "SUCCEEDED")
    operation = (await env.ledger.get(f"/v1/wallet/operations/{operation_id}")).json()
    assert operation["status"] == "posted"


async def test_a_withdrawal_left_unconfirmed_expires_and_the_hold_is_voided(env: Env) -> None:
    holder = await env.verified_user()
    operation_id = await env.withdraw_to_wechat(holder, "o_rails_user_forgets", 3_000)
    await env.withdrawals.step(operation_id)
    assert (await env.withdrawals.read(operation_id))["bank_status"] == "WAITING_USER"

    async with httpx.AsyncClient(base_url=env.wechat.base_url, timeout=10) as wechat:
        expired = await wechat.post(f"/control/transfer-bills/{transfer_no(operation_id)}/expire")
    assert expired.status_code == 200, expired.text
    done = await env.finished(operation_id)
    assert (done["status"], done["ledger_outcome"], done["failure_code"]) == ("failed", "voided", "OVERDUE_CLOSE")
    operation = (await env.ledger.get(f"/v1/wallet/operations/{operation_id}")).json()
    assert operation["status"] == "voided"  # the held 3,000 is the user's again


async def settled_funds(env: Env, merchant_id: str, amount_minor: int) -> str:
    """`amount_minor` settled for the merchant (as a settlement batch would); its settled account id."""
    ledger = settlement_context(env.runtime).ledger
    pending = await ledger.account_id(merchant_id, "merchant_pending", "CNY")
    settled: str = await ledger.account_id(merchant_id, "merchant_settled", "CNY")
    await ledger.post_transfer(
        idempotency_key=f"test:rails:settle:{merchant_id}",
        postings=[
            {"account_id": pending, "direction": "debit", "amount_minor": amount_minor, "currency": "CNY"},
            {"account_id": settled, "direction": "credit", "amount_minor": amount_minor, "currency": "CNY"},
        ],
    )
    return settled


async def test_a_merchant_payout_to_wechat_change_never_confirmed_is_cancelled_and_given_back(env: Env) -> None:
    settled = await settled_funds(env, "mch_w", 10_000)
    ledger = settlement_context(env.runtime).ledger
    created = await env.settlement.post(
        "/v1/payouts",
        headers={"X-Juhe-Merchant-Id": "mch_w"},
        json={
            "amount_minor": 4_000,
            "currency": "CNY",
            "account_no": "o_rails_merchant_owner",
            "account_name": "Shop W",
            "idempotency_key": "rails-wechat-1",
            "rail": "wechat_change",
        },
    )
    assert created.status_code == 201, created.text
    payout = created.json()
    assert (payout["status"], payout["bank_status"]) == ("pending", "WAITING_USER")
    assert payout["user_action"]["package_info"]
    assert int((await ledger.balance(settled))["balances"]["posted_balance_minor"]) == 6_000  # instructed

    payouts = settlement_context(env.runtime).payouts

    async def cancelled() -> bool:  # the worker's rounds: past the confirmation deadline settlement cancels it
        await payouts.step(payout["payout_id"])
        return bool((await payouts.read(payout["payout_id"]))["status"] != "pending")

    await eventually(cancelled, "the unconfirmed transfer cancelled")
    failed = (
        await env.settlement.get(f"/v1/payouts/{payout['payout_id']}", headers={"X-Juhe-Merchant-Id": "mch_w"})
    ).json()
    assert (failed["status"], failed["bank_status"]) == ("failed", "FAILED"), failed
    assert int((await ledger.balance(settled))["balances"]["posted_balance_minor"]) == 10_000  # given back
    async with httpx.AsyncClient(base_url=env.wechat.base_url, timeout=10) as wechat:
        late = await wechat.post(f"/control/transfer-bills/{transfer_no(payout['payout_id'])}/confirm")
    assert late.status_code != 200  # the cancelled bill can no longer be confirmed: paid nowhere


async def test_a_merchant_payout_and_wallet_withdrawals_to_alipay_accounts(env: Env) -> None:
    """A merchant payout paid at once (an unknown payee refused, money back); wallet withdrawals carry the
    holder's verified name with the Alipay user id: the holder's own account is paid (hold posted), an account
    under another real name is refused by Alipay (hold voided)."""
    ledger = settlement_context(env.runtime).ledger
    settled = await settled_funds(env, "mch_p", 10_000)
    payable = await ledger.account_id("mch_p", "merchant_payable", "CNY")
    escrow = await ledger.account_id("platform", "escrow_bank", "CNY")
    escrow_before = int((await ledger.balance(escrow))["balances"]["posted_balance_minor"])

    created = await env.settlement.post(
        "/v1/payouts",
        headers={"X-Juhe-Merchant-Id": "mch_p"},
        json={
            "amount_minor": 3_000,
            "currency": "CNY",
            "account_no": ALIPAY_PAYEE,
            "account_name": "Shop P",
            "idempotency_key": "rails-alipay-1",
            "rail": "alipay_account",
        },
    )
    assert created.status_code == 201, created.text
    payout = created.json()
    # Alipay answers a transfer at once: paid, §3.6 instruction then paid posting, like a bank payout.
    assert (payout["status"], payout["rail"], payout["bank_status"]) == ("succeeded", "alipay_account", "SUCCEEDED")
    assert payout["bank_ref"] and payout["outcome_transfer_id"]
    balances = {
        name: int((await ledger.balance(account))["balances"]["posted_balance_minor"])
        for name, account in (("settled", settled), ("payable", payable), ("escrow", escrow))
    }
    assert balances["settled"] == 7_000 and balances["payable"] == 0
    assert abs(balances["escrow"] - escrow_before) == 3_000

    refused = await env.settlement.post(
        "/v1/payouts",
        headers={"X-Juhe-Merchant-Id": "mch_p"},
        json={
            "amount_minor": 1_000,
            "currency": "CNY",
            "account_no": UNKNOWN_PAYEE,
            "account_name": "Nobody",
            "idempotency_key": "rails-alipay-2",
            "rail": "alipay_account",
        },
    )
    assert refused.status_code == 201, refused.text
    failed = refused.json()  # Alipay refuses an unknown payee: the payout fails and the money goes back
    assert failed["status"] == "failed" and failed["failure_code"] == "bank_rejected_request", failed
    assert int((await ledger.balance(settled))["balances"]["posted_balance_minor"]) == 7_000

    # Wallet withdrawals to Alipay accounts go only to the holder's own name.
    holder = await env.verified_user()
    own = await env.withdraw(holder, "alipay_account", {"identity": HOLDER_ALIPAY}, 2_500)
    await env.withdrawals.step(own)
    done = await env.finished(own)
    assert (done["status"], done["rail"], done["ledger_outcome"]) == ("succeeded", "alipay_account", "posted"), done
    assert (done["account_no"], done["account_name"]) == (HOLDER_ALIPAY, NAME)

    other = await env.verified_user()
    stranger = await env.withdraw(other, "alipay_account", {"identity": SOMEONE_ELSES_ALIPAY}, 1_500)
    await env.withdrawals.step(stranger)
    not_paid = await env.finished(stranger)
    assert (not_paid["status"], not_paid["ledger_outcome"]) == ("failed", "voided"), not_paid
    operation = (await env.ledger.get(f"/v1/wallet/operations/{stranger}")).json()
    assert operation["status"] == "voided"  # the 1,500 is the holder's again
