"""Failover across channels within one payment, and where the candidates come from (routing or fallback)."""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.embedded import free_port
from libs.common.testing.infra import serve_app
from services.routing.app import create_app as create_routing_app

from .conftest import Sandboxes, add_routes, approve, qr_payment


async def test_wechat_dark_fails_over_to_alipay_within_the_same_payment(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await start_cashier()  # no routing URL: the merchant's own order, WeChat first
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    async with httpx.AsyncClient() as client:
        dark = await client.put(sandboxes.wechat.base_url + "/control/faults", json={"dark": True})
        assert dark.status_code == 200

    created = await cashier.post("/v1/payments", qr_payment())
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "processing" and payment["channel"] == "alipay"
    assert [(a["channel"], a["status"]) for a in payment["attempts"]] == [
        ("wechatpay", "failed"),
        ("alipay", "processing"),
    ]
    assert payment["attempts"][0]["failure_code"] == "channel_unavailable"
    assert await cashier.outbox_count("payment.attempt_failed", payment["id"]) == 1

    await approve(sandboxes, "alipay", payment["attempts"][1]["out_trade_no"])
    await cashier.wait_status(payment["id"], "succeeded")
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1


async def test_every_channel_down_fails_the_payment_with_channel_unavailable(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await start_cashier()
    nowhere = f"http://127.0.0.1:{free_port()}"  # connection refused
    await cashier.configure("wechatpay", sandboxes.wechat_config(base_url=nowhere), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(gateway_url=nowhere + "/gateway.do"), priority=2)
    refused = await cashier.post("/v1/payments", qr_payment(order_no="down-1"))
    assert refused.status_code == 503 and refused.json()["code"] == "channel_unavailable"
    payment = await cashier.payment(refused.json()["payment_id"])
    assert payment["status"] == "failed" and len(payment["attempts"]) == 2
    assert await cashier.outbox_count("payment.attempt_failed", payment["id"]) == 2
    assert await cashier.outbox_count("payment.failed", payment["id"]) == 1


async def test_routing_down_falls_back_to_merchant_channel_order(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier(routing_url=f"http://127.0.0.1:{free_port()}", routing_timeout_seconds=1.0)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    created = await cashier.post("/v1/payments", qr_payment())
    assert created.status_code == 201, created.text
    assert created.json()["channel"] == "wechatpay" and created.json()["route_id"] is None


async def test_routing_decides_route_and_fee(
    start_cashier: Any, sandboxes: Sandboxes, migrated_database: Any, service_settings: Any
) -> None:
    """The real routing service (in-process, real HTTP): its cheapest route and fee land on the payment."""
    routing_db = await migrated_database("routing")
    routing_app = create_routing_app(service_settings("routing", database_url=routing_db, role="api"))
    async with serve_app(routing_app, name="routing") as routing_url:
        cashier = await start_cashier(routing_url=routing_url)
        await add_routes(
            routing_url,
            cashier.merchant_id,
            [
                ("ali_direct", "alipay", "alipay", 60, ["native_qr"]),
                ("wx_direct", "wechat", "wechatpay", 60, ["native_qr"]),
                ("wx_sp", "wechat", "wechatpay", 38, ["native_qr"]),
            ],
        )
        await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
        await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
        created = await cashier.post("/v1/payments", qr_payment(amount_minor=10_000))
        assert created.status_code == 201, created.text
        payment = created.json()
        assert payment["channel"] == "wechatpay" and payment["route_id"] == "wx_sp"  # cheapest WeChat route
        assert payment["fee_minor"] == 38  # 0.38 % of 100.00 yuan, as quoted by routing
