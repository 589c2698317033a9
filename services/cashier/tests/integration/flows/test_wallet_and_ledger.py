"""The cashier and a real ledger (HTTP server, same broker): channel payments and refunds posted by the
ledger's consumer (docs/ledger.md §3.1, §3.3), and wallet payments as the ledger's two-phase transfer (§3.2)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from libs.common.embedded import free_port
from libs.common.testing.infra import serve_app
from services.cashier.tests.integration.flows.conftest import (
    RunningCashier,
    Sandboxes,
    paid_payment,
    qr_payment,
    wait_for,
)
from services.ledger.app import create_app as create_ledger_app
from services.ledger.verify import verify

PLATFORM_FEE_RATE_BPS = 60  # docs/ledger.md example: 0.60 % charged to the merchant


@dataclass
class RunningLedger:
    base_url: str
    client: httpx.AsyncClient
    database_url: str

    async def balances(self, holder_id: str) -> dict[str, dict[str, int]]:
        """Balances of a holder's accounts by `kind[:channel]`."""
        response = await self.client.get("/v1/accounts", params={"holder_id": holder_id})
        assert response.status_code == 200, response.text
        return {
            a["kind"] + (f":{a['metadata']['channel']}" if a["metadata"].get("channel") else ""): a["balances"]
            for a in response.json()["data"]
        }

    async def posted(self, holder_id: str) -> dict[str, int]:
        return {k: v["posted_balance_minor"] for k, v in (await self.balances(holder_id)).items()}

    async def transfer(self, key: str) -> dict[str, Any] | None:
        response = await self.client.get("/v1/transfers", params={"source": "cashier", "idempotency_key": key})
        return dict(response.json()) if response.status_code == 200 else None

    async def funded_wallet(self, user_id: str, amount_minor: int) -> str:
        wallet = await self.client.post(
            "/v1/accounts",
            json={
                "holder_id": user_id,
                "currency": "CNY",
                "kind": "user_wallet",
                "code": "2301",
                "flags": {"debits_must_not_exceed_credits": True},
            },
        )
        assert wallet.status_code == 201, wallet.text
        source = await self.client.post(
            "/v1/accounts",
            json={"holder_id": f"legacy_{user_id}", "currency": "CNY", "kind": "opening_balance", "code": "3101"},
        )
        assert source.status_code == 201, source.text
        funded = await self.client.post(
            "/v1/transfers",
            json={
                "source": "test",
                "idempotency_key": f"fund-{user_id}",
                "postings": [
                    {
                        "account_id": source.json()["id"],
                        "direction": "debit",
                        "amount_minor": amount_minor,
                        "currency": "CNY",
                    },
                    {
                        "account_id": wallet.json()["id"],
                        "direction": "credit",
                        "amount_minor": amount_minor,
                        "currency": "CNY",
                    },
                ],
            },
        )
        assert funded.status_code == 201, funded.text
        return str(wallet.json()["id"])


@pytest.fixture
async def ledger(migrated_database: Any, service_settings: Any, platform_topics: str) -> AsyncIterator[RunningLedger]:
    database_url = await migrated_database("ledger")
    port = free_port()
    settings = service_settings("ledger", database_url=database_url, port=port, expiry_interval_seconds=0.2)
    async with (
        serve_app(create_ledger_app(settings), port=port, name="the ledger") as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
    ):
        yield RunningLedger(base_url, client, database_url)
        assert await verify(database_url) == {}  # every test leaves a ledger that verifies


async def _cashier_with_ledger(start_cashier: Callable[..., Any], ledger: RunningLedger, **extra: Any) -> Any:
    return await start_cashier(ledger_url=ledger.base_url, platform_fee_rate_bps=PLATFORM_FEE_RATE_BPS, **extra)


async def test_wechat_native_qr_payment_is_posted_once_by_the_ledger(
    start_cashier: Any, sandboxes: Sandboxes, ledger: RunningLedger, clean_faults: None
) -> None:
    cashier = await _cashier_with_ledger(start_cashier, ledger)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    payment = await paid_payment(cashier, sandboxes, "wechatpay", 10000)

    transfer = await wait_for(lambda: ledger.transfer(f"{payment['id']}:succeeded"), "the ledger posting")
    assert transfer["status"] == "posted" and transfer["reference"] == payment["id"]
    # No routing here, so no channel fee in force: clearing takes the gross (§3.1 with channel fee 0).
    assert await ledger.posted(cashier.merchant_id) == {"merchant_pending": 9940}
    platform = await ledger.posted("platform")
    assert platform["platform_fee_income"] == 60 and platform["channel_clearing:wechatpay"] == 10000
    assert "channel_fee_expense:wechatpay" not in platform


async def test_alipay_refund_reverses_the_posting(
    start_cashier: Any, sandboxes: Sandboxes, ledger: RunningLedger, clean_faults: None
) -> None:
    cashier = await _cashier_with_ledger(start_cashier, ledger)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    payment = await paid_payment(cashier, sandboxes, "alipay", 10000)
    refund = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 4000})
    assert refund.status_code == 201 and refund.json()["status"] == "succeeded", refund.text

    # payment.succeeded and refund.succeeded travel on different topics, so the ledger may apply either first;
    # the balances below are the same whatever the order, once both are posted.
    await wait_for(lambda: ledger.transfer(f"{payment['id']}:succeeded"), "the payment posting")
    await wait_for(lambda: ledger.transfer(f"{refund.json()['id']}:succeeded"), "the refund posting")
    # §3.3: fee 60 × 4000/10000 = 24 back to the merchant's side; 9940 − 3976 = 5964.
    assert await ledger.posted(cashier.merchant_id) == {"merchant_pending": 5964}
    platform = await ledger.posted("platform")
    assert platform["platform_fee_income"] == 36 and platform["channel_clearing:alipay"] == 6000


async def _wallet_cashier(
    start_cashier: Callable[..., Any], ledger: RunningLedger, balance_minor: int, **extra: Any
) -> tuple[RunningCashier, str]:
    """A cashier offering only the wallet, and a fresh user whose ledger wallet holds `balance_minor`."""
    cashier = await _cashier_with_ledger(start_cashier, ledger, **extra)
    await cashier.configure("wallet", {}, priority=1)
    user = f"usr_{uuid.uuid4().hex[:10]}"
    await ledger.funded_wallet(user, balance_minor)
    return cashier, user


def wallet_payment(user_id: str, amount_minor: int, **extra: Any) -> dict[str, Any]:
    return qr_payment(amount_minor=amount_minor, scene="wallet", payer={"user_id": user_id}, **extra)


async def test_wallet_payment_moves_the_balance_only_on_confirm_and_refunds_back(
    start_cashier: Any, ledger: RunningLedger
) -> None:
    cashier, user = await _wallet_cashier(start_cashier, ledger, 15000)

    created = await cashier.post("/v1/payments", wallet_payment(user, 10000))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "processing" and payment["channel"] == "wallet"
    assert payment["payer_action"]["type"] == "wallet_confirm"
    wallet = (await ledger.balances(user))["user_wallet"]
    assert wallet["posted_balance_minor"] == 15000 and wallet["available_balance_minor"] == 5000  # held only

    other = await cashier.client.post(
        f"/v1/payments/{payment['id']}/confirm", json={"user_id": "usr_other"}, headers=cashier.headers()
    )
    assert other.status_code == 403 and other.json()["code"] == "payer_mismatch"
    confirms = await asyncio.gather(
        *(
            cashier.client.post(
                f"/v1/payments/{payment['id']}/confirm", json={"user_id": user}, headers=cashier.headers()
            )
            for _ in range(5)
        )
    )
    assert all(c.status_code == 200 and c.json()["status"] == "succeeded" for c in confirms), confirms
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1
    assert (await ledger.transfer(f"{payment['id']}:hold"))["status"] == "posted"  # type: ignore[index]
    assert (await ledger.balances(user))["user_wallet"]["posted_balance_minor"] == 5000
    assert await ledger.posted(cashier.merchant_id) == {"merchant_pending": 9940}

    refund = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 10000})
    assert refund.status_code == 201 and refund.json()["status"] == "succeeded", refund.text
    assert (await ledger.balances(user))["user_wallet"]["posted_balance_minor"] == 15000
    assert await ledger.posted(cashier.merchant_id) == {"merchant_pending": 0}
    assert (await ledger.posted("platform"))["platform_fee_income"] == 0
    await asyncio.sleep(0)  # the ledger's consumer skips wallet events: no second posting (verified below)
    assert await ledger.transfer(f"{payment['id']}:succeeded") is None


async def test_wallet_insufficient_funds_is_refused_and_nothing_is_held(
    start_cashier: Any, ledger: RunningLedger
) -> None:
    cashier, user = await _wallet_cashier(start_cashier, ledger, 500)

    refused = await cashier.post("/v1/payments", wallet_payment(user, 10000))
    assert refused.status_code == 402 and refused.json()["code"] == "insufficient_funds", refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    wallet = (await ledger.balances(user))["user_wallet"]
    assert wallet["available_balance_minor"] == 500 and wallet["debits_pending"] == 0
    no_wallet = await cashier.post("/v1/payments", wallet_payment("usr_nobody", 100))
    assert no_wallet.status_code == 422 and no_wallet.json()["code"] == "wallet_not_found"
    no_payer = await cashier.post("/v1/payments", qr_payment(scene="wallet"))
    assert no_payer.status_code == 422 and no_payer.json()["code"] == "validation_failed"


async def test_wallet_hold_is_voided_on_expiry_and_cannot_be_confirmed_after(
    start_cashier: Any, ledger: RunningLedger
) -> None:
    cashier, user = await _wallet_cashier(start_cashier, ledger, 1000, payment_expiry_default_seconds=60)
    created = await cashier.post("/v1/payments", wallet_payment(user, 800))
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    assert (await ledger.balances(user))["user_wallet"]["available_balance_minor"] == 200

    # Expire it now (as the clock would): the expiry loop voids the hold at the ledger, then closes locally.
    from sqlalchemy import text

    async with cashier.engine.begin() as conn:
        await conn.execute(
            text("UPDATE payments SET expire_at = now() - interval '1 second' WHERE id = :i"), {"i": payment_id}
        )
    closed = await cashier.wait_status(payment_id, "closed")
    assert closed["status"] == "closed"
    assert (await ledger.transfer(f"{payment_id}:hold"))["status"] == "voided"  # type: ignore[index]
    wallet = (await ledger.balances(user))["user_wallet"]
    assert wallet["available_balance_minor"] == 1000 and wallet["posted_balance_minor"] == 1000

    late = await cashier.client.post(
        f"/v1/payments/{payment_id}/confirm", json={"user_id": user}, headers=cashier.headers()
    )
    assert late.status_code == 409 and late.json()["code"] == "payment_not_confirmable"
    assert await cashier.outbox_count("payment.succeeded", payment_id) == 0


async def test_user_identity_token_confirms(start_cashier: Any, ledger: RunningLedger) -> None:
    """Through the gateway the payer is the signed user identity, not a body field."""
    from libs.common.internal_auth import mint_identity_token

    cashier, user = await _wallet_cashier(start_cashier, ledger, 300)
    created = await cashier.post("/v1/payments", wallet_payment(user, 300))
    assert created.status_code == 201, created.text
    secret = cashier.cashier.settings.internal_token_secret.get_secret_value()
    stranger = mint_identity_token(secret, key_id="k1", user="usr_stranger")
    refused = await cashier.client.post(
        f"/v1/payments/{created.json()['id']}/confirm", headers={"X-Juhe-Identity": stranger}
    )
    assert refused.status_code == 403 and refused.json()["code"] == "payer_mismatch"
    token = mint_identity_token(secret, key_id="k1", user=user)
    confirmed = await cashier.client.post(
        f"/v1/payments/{created.json()['id']}/confirm", headers={"X-Juhe-Identity": token}
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    assert (await ledger.balances(user))["user_wallet"]["posted_balance_minor"] == 0
