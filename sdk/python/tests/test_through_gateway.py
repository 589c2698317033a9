"""The SDK against a real gateway with the real cashier, ledger and settlement behind it (real HTTP,
real PostgreSQL, the Alipay sandbox as the channel): what a merchant, a platform and a user do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from juhe_sdk import AsyncClient, Client, ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError

from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, StackFactory
from gateway.tests.integration.servers import ThreadServer
from sandboxes.common.testing import SandboxProcess

WAIT_SECONDS_MAX = 20.0


@dataclass
class Services:
    stack: Stack
    alipay: SandboxProcess
    alipay_app: dict[str, Any]

    def merchant(self) -> AsyncClient:
        return self.stack.merchant()

    def admin(self) -> AsyncClient:
        return self.stack.admin()

    def alipay_config(self) -> dict[str, Any]:
        a = self.alipay_app
        return {
            "gateway_url": self.alipay.base_url + "/gateway.do",
            "app_id": a["app_id"],
            "app_private_key_pem": a["app_private_key_pem"],
            "alipay_public_key_pem": a["alipay_public_key_pem"],
            "seller_id": a["seller_id"],
            "connect_timeout_seconds": 1.0,
            "read_timeout_seconds": 1.5,
        }

    async def approve(self, out_trade_no: str) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.alipay.base_url}/control/trades/{out_trade_no}/approve",
                params={"app_id": self.alipay_app["app_id"]},
            )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="session")
def alipay_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("sdk-sandbox")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    alipay = SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env)
    alipay.start()
    try:
        app = httpx.post(alipay.base_url + "/control/apps", json={})
        app.raise_for_status()
        yield alipay, app.json()
    finally:
        alipay.stop()


@pytest.fixture
async def services(
    make_stack: StackFactory,
    migrated_database: Any,
    service_settings: Any,
    platform_topics: str,
    alipay_sandbox: tuple[SandboxProcess, dict[str, Any]],
) -> AsyncIterator[Services]:
    from services.cashier.app import create_app as cashier_app
    from services.ledger.app import create_app as ledger_app
    from services.settlement.app import create_app as settlement_app

    common = {"internal_token_secret": INTERNAL_SECRET}
    ledger = ThreadServer(
        ledger_app(service_settings("ledger", database_url=await migrated_database("ledger"), role="api", **common))
    ).start()
    settlement = ThreadServer(
        settlement_app(
            service_settings(
                "settlement",
                database_url=await migrated_database("settlement"),
                role="api",
                ledger_url=ledger.base_url,
                **common,
            )
        )
    ).start()
    cashier = ThreadServer(
        cashier_app(
            service_settings(
                "cashier",
                database_url=await migrated_database("cashier"),
                settlement_url=settlement.base_url,
                poll_initial_seconds=0.2,
                poll_backoff_max_seconds=0.5,
                poll_interval_seconds=0.1,
                **common,
            )
        )
    ).start()
    try:
        stack: Stack = await make_stack(
            cashier_url=cashier.base_url, ledger_url=ledger.base_url, settlement_url=settlement.base_url
        )
        alipay, app = alipay_sandbox
        yield Services(stack, alipay, app)
    finally:
        for server in (cashier, settlement, ledger):
            server.stop()


async def _wait_status(juhe: AsyncClient, payment_id: str, status: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
    while True:
        payment: dict[str, Any] = await juhe.payments.retrieve(payment_id)
        if payment["status"] == status:
            return payment
        assert asyncio.get_running_loop().time() < deadline, f"payment stayed {payment['status']}"
        await asyncio.sleep(0.1)


def _order() -> str:
    return f"ord_{uuid.uuid4().hex[:16]}"


async def test_payments_and_refunds_with_the_async_client(services: Services) -> None:
    admin, juhe = services.admin(), services.merchant()
    await admin.cashier_merchants.update("mch_demo", webhook_secret=services.stack.keys["webhook_secret"])
    await admin.cashier_merchants.set_channel("mch_demo", "alipay", priority=1, config=services.alipay_config())
    assert [c["channel"] for c in await admin.cashier_merchants.channels("mch_demo")] == ["alipay"]
    with pytest.raises(PermissionDeniedError) as forbidden:  # the cashier's admin API is the platform's
        await juhe.cashier_merchants.channels("mch_demo")
    assert forbidden.value.code == "route_forbidden"

    created = await juhe.payments.create(
        merchant_order_no=_order(),
        amount_minor=1000,
        currency="CNY",
        description="Parking",
        scene="native_qr",
        profit_sharing=True,  # passed through to the cashier as given
    )
    assert created["purpose"] == "payment" and created["profit_sharing"] is True and created["split"] is None
    await services.approve(created["attempts"][0]["out_trade_no"])
    paid = await _wait_status(juhe, created["id"], "succeeded")
    assert paid["amount_minor"] == 1000

    refund = await juhe.payments.refund(created["id"], amount_minor=300, reason="damaged")
    assert refund["status"] == "succeeded" and refund["amount_minor"] == 300
    assert (await juhe.refunds.retrieve(refund["id"]))["id"] == refund["id"]
    listed = await juhe.payments.refunds(created["id"])
    assert [r["id"] for r in listed["data"]] == [refund["id"]]
    with pytest.raises(ConflictError) as too_much:
        await juhe.payments.refund(created["id"], amount_minor=800)
    assert too_much.value.code == "refund_exceeds_remaining"
    assert (await juhe.payments.retrieve(created["id"]))["refunded_minor"] == 300

    open_one = await juhe.payments.create(
        merchant_order_no=_order(), amount_minor=5, currency="CNY", description="x", scene="native_qr"
    )
    closed = await juhe.payments.close(open_one["id"])
    assert closed["status"] == "closed"
    seen = [p["id"] async for p in juhe.payments.list(page_size=1)]  # two pages of one, newest first
    assert sorted(seen) == sorted([created["id"], open_one["id"]])
    deliveries = await juhe.payments.webhook_deliveries(created["id"])
    assert isinstance(deliveries, dict | list)
    with pytest.raises(NotFoundError):
        await juhe.payments.retrieve("pay_0193" + "0" * 28)


async def test_explicit_split_is_passed_through_and_checked_by_settlement(services: Services) -> None:
    admin, juhe = services.admin(), services.merchant()
    await admin.cashier_merchants.set_channel("mch_demo", "alipay", priority=1, config=services.alipay_config())
    body = {"amount_minor": 1000, "currency": "CNY", "description": "Split", "scene": "native_qr"}
    split = [{"receiver_id": "rcv_partner", "amount_minor": 100}]
    with pytest.raises(NotFoundError) as no_rule:  # settlement's 404 relayed as is, nothing created
        await juhe.payments.create(merchant_order_no=_order(), split=split, **body)
    assert no_rule.value.code == "split_rule_not_found"
    assert [p async for p in juhe.payments.list()] == []

    await admin.settlement.receivers.update("rcv_partner", kind="partner", holder_id="partner_1", name="Partner")
    await admin.settlement.receivers.update("rcv_merchant", kind="merchant", holder_id="mch_demo", name="Demo")
    rule = await admin.settlement.set_split_rule(
        "mch_demo", shares=[{"receiver_id": "rcv_partner", "percent_bps": 2000}], remainder_receiver_id="rcv_merchant"
    )
    assert rule["merchant_id"] == "mch_demo"
    assert (await admin.settlement.split_rule("mch_demo"))["remainder_receiver_id"] == "rcv_merchant"
    created = await juhe.payments.create(merchant_order_no=_order(), split=split, **body)
    assert created["split"] == split
    with pytest.raises(PermissionDeniedError):  # settlement administration is the platform's
        await juhe.settlement.split_rule("mch_demo")


async def test_statements_and_payouts(services: Services) -> None:
    juhe = services.merchant()
    current = await juhe.statements.current()
    assert current["merchant_id"] == "mch_demo" and current["batches"] == []
    csv = await juhe.statements.transactions_csv(date_from="2026-01-01", date_to="2026-01-31")
    assert isinstance(csv, str) and csv.splitlines()[0].startswith("payment_id,")
    assert [b async for b in juhe.statements.batches()] == []
    with pytest.raises(InvalidRequestError) as above:  # nothing settled yet: nothing to pay out
        await juhe.payouts.create(
            amount_minor=100, currency="CNY", account_no="6222020000000001", account_name="Demo", idempotency_key="p-1"
        )
    assert above.value.status == 422
    assert [p async for p in juhe.payouts.list()] == []
    with pytest.raises(NotFoundError):
        await juhe.payouts.retrieve("po_missing")
    admin = services.admin()
    assert [p async for p in admin.settlement.payouts.list(holder_id="mch_demo")] == []
    with pytest.raises(PermissionDeniedError):
        await juhe.request("GET", "/v1/settlement/payouts")


async def test_wallet_my_wallet_with_a_user_token_and_the_sync_client(services: Services) -> None:
    keys = services.stack.keys
    admin = services.admin()
    from services.ledger.wallet.domain.kyc import resident_id_check_char

    first17 = "44030819900101123"
    holder = await admin.wallet.holders.create(
        holder_id=keys["user_id"],
        holder_type="person",
        name="Demo User",
        resident_id=first17 + resident_id_check_char(first17),
        phone="13800138000",
    )
    assert holder["holder_id"] == keys["user_id"]

    def as_user() -> dict[str, Any]:
        with Client(services.stack.url, token=keys["user_token"], max_retries=0) as user:
            wallet: dict[str, Any] = user.wallet.my_wallet(keys["user_id"])
            with pytest.raises(PermissionDeniedError):
                user.payments.list().__next__()  # user tokens reach the wallet only
            return wallet

    wallet = await asyncio.to_thread(as_user)
    assert wallet["holder"]["holder_id"] == keys["user_id"] and wallet["holder"]["holder_type"] == "person"
    balance = [a for a in wallet["subaccounts"] if a["subaccount_type"] == "balance"]
    assert len(balance) == 1 and balance[0]["currency"] == "CNY"
    assert wallet["recent"] == [] and wallet["points"] == 0
    token = await admin.platform.issue_user_token(keys["user_id"], ttl_seconds=300)
    again = AsyncClient(services.stack.url, token=token["token"], max_retries=0)
    services.stack.clients.append(again)
    assert (await again.wallet.holder(keys["user_id"]).my_wallet()) == await again.wallet.my_wallet(keys["user_id"])
