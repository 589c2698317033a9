"""付款码 through the real cashier and sandboxes: the code picks the channel, the password step is polled by
the worker, an unconfirmed code is reversed / cancelled at its deadline with nothing charged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from libs.common.testing.infra import serve_app
from services.cashier.events import PAYMENT_CLOSED, PAYMENT_FAILED, PAYMENT_SUCCEEDED
from services.routing.app import create_app as create_routing_app

from .conftest import WECHAT_MCHID, RunningCashier, Sandboxes, add_routes, approve

CHANNELS = ("wechatpay", "alipay")


async def payer_code(sandboxes: Sandboxes, channel: str, **extra: Any) -> str:
    """The code the sandbox payer's app shows (WeChat 10–15…, Alipay 25–30…)."""
    sandbox = sandboxes.wechat if channel == "wechatpay" else sandboxes.alipay
    async with httpx.AsyncClient(base_url=sandbox.base_url, timeout=10) as client:
        response = await client.post("/control/payer-codes", json=extra)
    assert response.status_code == 200, response.text
    return str(response.json()["auth_code"])


def code_payment(auth_code: str, amount_minor: int = 880, **overrides: Any) -> dict[str, Any]:
    return {
        "merchant_order_no": f"gate_{uuid.uuid4().hex[:16]}",
        "amount_minor": amount_minor,
        "currency": "CNY",
        "description": "Parking, gate 3",
        "scene": "payment_code",
        "auth_code": auth_code,
        "metadata": {"store_id": "gate-3", "device_id": "pos-7"},
        **overrides,
    }


async def channel_state(sandboxes: Sandboxes, channel: str, out_trade_no: str) -> str:
    """The order's state at the channel itself (not the cashier's view)."""
    async with httpx.AsyncClient(timeout=10) as client:
        if channel == "wechatpay":
            response = await client.get(
                f"{sandboxes.wechat.base_url}/control/orders/{out_trade_no}", params={"mchid": WECHAT_MCHID}
            )
            assert response.status_code == 200, response.text
            return str(response.json()["order"]["trade_state"])
        response = await client.get(
            f"{sandboxes.alipay.base_url}/control/trades/{out_trade_no}",
            params={"app_id": sandboxes.alipay_app["app_id"]},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["status"])


async def both_channels(start_cashier: Any, sandboxes: Sandboxes, **settings: Any) -> RunningCashier:
    cashier: RunningCashier = await start_cashier(**settings)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    return cashier


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_code_is_charged_at_once_on_its_own_channel(
    start_cashier: Any, sandboxes: Sandboxes, channel: str
) -> None:
    cashier = await both_channels(start_cashier, sandboxes)
    created = await cashier.post("/v1/payments", code_payment(await payer_code(sandboxes, channel)))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert (payment["status"], payment["channel"], payment["scene"]) == ("succeeded", channel, "payment_code")
    assert payment["channel_trade_no"] and payment["refundable_minor"] == 880
    assert [a["channel"] for a in payment["attempts"]] == [channel]  # the code's channel, whatever the priority
    assert await cashier.outbox_count(PAYMENT_SUCCEEDED, payment["id"]) == 1


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_password_step_is_polled_by_the_worker_until_paid(
    start_cashier: Any, sandboxes: Sandboxes, channel: str
) -> None:
    cashier = await both_channels(start_cashier, sandboxes, payment_code_deadline_seconds=120)
    created = await cashier.post(
        "/v1/payments", code_payment(await payer_code(sandboxes, channel, password_required=True))
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "processing" and payment["channel"] == channel
    assert payment["payer_action"] == {"type": "payment_code", "state": "user_paying", "channel_data": {}}
    # The deadline is the (bounded) password window, not the 30-minute default of other scenes.
    expire_at = datetime.fromisoformat(payment["expire_at"])
    assert expire_at <= datetime.now(UTC) + timedelta(seconds=121)

    await approve(sandboxes, channel, payment["attempts"][0]["out_trade_no"])  # the payer enters the password
    succeeded = await cashier.wait_status(payment["id"], "succeeded")
    assert succeeded["channel_trade_no"] and not succeeded["late_success"]
    assert await cashier.outbox_count(PAYMENT_SUCCEEDED, payment["id"]) == 1


@pytest.mark.parametrize("channel", CHANNELS)
async def test_an_unconfirmed_code_is_reversed_at_the_deadline_and_nothing_is_charged(
    start_cashier: Any, sandboxes: Sandboxes, channel: str
) -> None:
    cashier = await both_channels(start_cashier, sandboxes, payment_code_deadline_seconds=5)
    created = await cashier.post(
        "/v1/payments", code_payment(await payer_code(sandboxes, channel, password_required=True))
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "processing"
    out_trade_no = payment["attempts"][0]["out_trade_no"]

    closed = await cashier.wait_status(payment["id"], "closed")
    assert closed["failure_code"] == "payment_code_timeout" and closed["refundable_minor"] == 0
    assert closed["attempts"][0]["status"] == "closed"
    # At the channel the order is reversed / cancelled, so a password entered now charges nothing.
    assert await channel_state(sandboxes, channel, out_trade_no) in ("REVOKED", "TRADE_CLOSED")
    async with httpx.AsyncClient(timeout=10) as client:
        late = (
            await client.post(
                f"{sandboxes.wechat.base_url}/control/orders/{out_trade_no}/approve", params={"mchid": WECHAT_MCHID}
            )
            if channel == "wechatpay"
            else await client.post(
                f"{sandboxes.alipay.base_url}/control/trades/{out_trade_no}/approve",
                params={"app_id": sandboxes.alipay_app["app_id"]},
            )
        )
    assert late.status_code != 200
    # No success event, so the ledger posts nothing; one close event.
    assert await cashier.outbox_count(PAYMENT_SUCCEEDED, payment["id"]) == 0
    assert await cashier.outbox_count(PAYMENT_CLOSED, payment["id"]) == 1


async def test_a_merchant_cancel_reverses_the_code_at_once(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await both_channels(start_cashier, sandboxes, payment_code_deadline_seconds=300)
    created = await cashier.post(
        "/v1/payments", code_payment(await payer_code(sandboxes, "wechatpay", password_required=True))
    )
    payment = created.json()
    answer = await cashier.post(f"/v1/payments/{payment['id']}/close")
    assert answer.status_code == 200, answer.text
    closed = await cashier.wait_status(payment["id"], "closed")
    assert closed["failure_code"] == "payment_code_timeout"
    assert await channel_state(sandboxes, "wechatpay", payment["attempts"][0]["out_trade_no"]) == "REVOKED"


async def test_codes_no_connector_can_charge_are_refused_with_stable_codes(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await both_channels(start_cashier, sandboxes)
    unionpay = await cashier.post("/v1/payments", code_payment("6212345678901234567"))
    assert unionpay.status_code == 422 and unionpay.json()["code"] == "payment_code_not_supported", unionpay.text
    garbage = await cashier.post("/v1/payments", code_payment("991234567890123456"))
    assert garbage.status_code == 422 and garbage.json()["code"] == "payment_code_invalid", garbage.text
    missing = await cashier.post("/v1/payments", {**code_payment("x"), "auth_code": None})
    assert missing.status_code == 422 and missing.json()["code"] == "validation_failed", missing.text
    # A used code is refused by its channel: the payment fails, nothing is charged, and no other channel is tried.
    used = await payer_code(sandboxes, "alipay")
    assert (await cashier.post("/v1/payments", code_payment(used))).status_code == 201
    again = await cashier.post("/v1/payments", code_payment(used))
    assert again.status_code == 402 and again.json()["code"] == "channel_refused", again.text
    failed = again.json()["payment"]
    assert failed["status"] == "failed" and [a["channel"] for a in failed["attempts"]] == ["alipay"]
    assert await cashier.outbox_count(PAYMENT_FAILED, failed["id"]) == 1
    # The channel the code belongs to must be one the merchant has.
    alipay_only: RunningCashier = await start_cashier()
    await alipay_only.configure("alipay", sandboxes.alipay_config(), priority=1)
    wechat_code = await alipay_only.post("/v1/payments", code_payment(await payer_code(sandboxes, "wechatpay")))
    assert wechat_code.status_code == 422 and wechat_code.json()["code"] == "no_route_available", wechat_code.text


async def test_routing_prices_the_codes_channel_for_the_barcode_scene(
    start_cashier: Any, sandboxes: Sandboxes, migrated_database: Any, service_settings: Any
) -> None:
    """The code decides the channel; routing decides that channel's route and fee (scene `barcode`)."""
    routing_db = await migrated_database("routing")
    routing_app = create_routing_app(service_settings("routing", database_url=routing_db, role="api"))
    async with serve_app(routing_app, name="routing") as routing_url:
        cashier = await start_cashier(routing_url=routing_url)
        await add_routes(
            routing_url,
            cashier.merchant_id,
            [("ali_f2f", "alipay", "alipay", 38, ["barcode"]), ("wx_pos", "wechat", "wechatpay", 20, ["barcode"])],
        )
        await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
        await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
        created = await cashier.post(
            "/v1/payments", code_payment(await payer_code(sandboxes, "alipay"), amount_minor=10_000)
        )
        assert created.status_code == 201, created.text
        payment = created.json()
        assert (payment["status"], payment["channel"], payment["route_id"]) == ("succeeded", "alipay", "ali_f2f")
        assert payment["fee_minor"] == 38
