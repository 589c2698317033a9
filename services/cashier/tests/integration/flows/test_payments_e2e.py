"""A payment from creation to merchant webhook, over real sandboxes, HTTP, PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from libs.common.events import Envelope
from libs.common.kafka import topic_name
from libs.common.outbox_tables import outbox
from services.cashier.domain.webhooks import SIGNATURE_HEADER, verify_signature
from services.cashier.flows.payments import poll_due
from services.cashier.store.tables import attempts, payments

from .conftest import (
    WECHAT_APPID,
    WECHAT_MCHID,
    NotificationTap,
    RunningCashier,
    Sandboxes,
    WebhookReceiver,
    approve,
    qr_payment,
    wait_for,
)


async def broker_events(bootstrap: str, namespace: str, topic: str, subject: str) -> list[Envelope]:
    """Every event about `subject` on the (namespaced) topic, read from the beginning."""
    consumer = AIOKafkaConsumer(
        topic_name(namespace, topic),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        found: list[Envelope] = []
        batches = await consumer.getmany(timeout_ms=3000)
        while batches:
            for records in batches.values():
                for record in records:
                    envelope = Envelope.from_bytes(record.value)
                    if envelope.subject == subject:
                        found.append(envelope)
            batches = await consumer.getmany(timeout_ms=500)
        return found
    finally:
        await consumer.stop()


def assert_signed_webhook(received: Any, secret: str) -> dict[str, Any]:
    header = received.headers[SIGNATURE_HEADER]
    assert verify_signature(secret, header, received.body, now=int(time.time()))
    assert not verify_signature(secret, header, received.body + b" ", now=int(time.time()))
    return dict(json.loads(received.body))


async def _end_to_end(
    cashier: RunningCashier,
    sandboxes: Sandboxes,
    webhook_receiver: WebhookReceiver,
    channel: str,
    juhe_infra: Any,
) -> None:
    created = await cashier.post("/v1/payments", qr_payment(amount_minor=8888, preferred_channels=[channel]))
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "processing" and payment["channel"] == channel
    assert payment["payer_action"], "the payer needs a QR code"
    out_trade_no = payment["attempts"][0]["out_trade_no"]

    await approve(sandboxes, channel, out_trade_no)
    succeeded = await cashier.wait_status(payment["id"], "succeeded")
    assert succeeded["channel_trade_no"] and succeeded["refundable_minor"] == 8888
    assert not succeeded["late_success"]

    hooks = await wait_for(webhook_receiver.delivered, "the merchant webhook")
    body = assert_signed_webhook(hooks[0], cashier.webhook_secret)
    assert body["type"] == "payment.succeeded"
    assert body["data"]["id"] == payment["id"] and body["data"]["amount_minor"] == 8888

    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1
    events = await wait_for(
        lambda: _succeeded_on_broker(juhe_infra.bootstrap, cashier.namespace, payment["id"]),
        "payment.succeeded on the broker",
    )
    assert len(events) == 1
    data = events[0].data
    assert data["merchant_id"] == cashier.merchant_id and data["channel"] == channel
    assert data["amount_minor"] == 8888 and data["currency"] == "CNY" and data["channel_trade_no"]
    assert data["attempt"]["latency_ms"] is not None
    assert data["channel_discount"] is None  # no coupon of the channel's own

    async def recorded() -> bool:
        rows = (await cashier.get(f"/v1/payments/{payment['id']}/webhook-deliveries")).json()["data"]
        return [d["status"] for d in rows] == ["delivered"]

    await wait_for(recorded, "the delivery log to say delivered")


async def _succeeded_on_broker(bootstrap: str, namespace: str, payment_id: str) -> list[Envelope] | None:
    events = await broker_events(bootstrap, namespace, "cashier.payments", payment_id)
    succeeded = [e for e in events if e.type == "payment.succeeded"]
    return succeeded or None


async def test_alipay_qr_payment_end_to_end(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver, juhe_infra: Any
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    await _end_to_end(cashier, sandboxes, webhook_receiver, "alipay", juhe_infra)


async def test_wechat_native_payment_end_to_end(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver, juhe_infra: Any
) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await _end_to_end(cashier, sandboxes, webhook_receiver, "wechatpay", juhe_infra)


async def test_a_channel_coupon_the_payer_used_is_carried_as_channel_discount(
    start_cashier: Any, sandboxes: Sandboxes, juhe_infra: Any
) -> None:
    """The payer pays with a 代金券 WeChat funds: the channel was asked for the whole amount, and the
    payment.succeeded event carries the channel's discount apart from Juhe's own `discount`; the payment record
    keeps it and a refund's events carry it (`payment_channel_discount`, docs/ledger.md §3.15)."""
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    control = f"{sandboxes.wechat.base_url}/control"
    openid = f"oCoupon{time.time_ns()}"
    async with httpx.AsyncClient(timeout=30) as http:
        stock = (
            await http.post(
                f"{control}/favor/stocks",
                json={
                    "stock_name": "微信立减",
                    "coupon_amount": 500,
                    "transaction_minimum": 1000,
                    "max_coupons": 5,
                    "available_merchants": [WECHAT_MCHID],
                },
            )
        ).json()
        sent = await http.post(
            f"{control}/favor/stocks/{stock['stock_id']}/send", json={"openid": openid, "appid": WECHAT_APPID}
        )
        created = await cashier.post("/v1/payments", qr_payment(amount_minor=3000, preferred_channels=["wechatpay"]))
        assert created.status_code == 201, created.text
        payment = created.json()
        approved = await http.post(
            f"{control}/orders/{payment['attempts'][0]['out_trade_no']}/approve",
            params={"mchid": WECHAT_MCHID},
            json={"payer_openid": openid, "coupon_id": sent.json()["coupon_id"]},
        )
        assert approved.status_code == 200, approved.text
    await cashier.wait_status(payment["id"], "succeeded")
    events = await wait_for(
        lambda: _succeeded_on_broker(juhe_infra.bootstrap, cashier.namespace, payment["id"]),
        "payment.succeeded on the broker",
    )
    data = events[0].data
    assert data["amount_minor"] == 3000 and data["discount"] is None
    assert data["channel_discount"] == {
        "discount_minor": 500,
        "channel_minor": 500,
        "merchant_minor": 0,
        "unsettled_minor": 0,
        "coupons": [
            {
                "coupon_id": sent.json()["coupon_id"],
                "stock_id": stock["stock_id"],
                "kind": "CASH",
                "amount_minor": 500,
                "channel_minor": 500,
                "merchant_minor": 0,
                "unsettled_minor": 0,
            }
        ],
    }
    async with cashier.engine.connect() as conn:
        stored = await conn.scalar(select(payments.c.channel_discount).where(payments.c.id == payment["id"]))
    assert stored == data["channel_discount"]
    shown = await cashier.get(f"/v1/payments/{payment['id']}")
    assert shown.json()["channel_discount"] == data["channel_discount"]  # and the payment view shows it
    refund = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 1000})
    assert refund.status_code == 201, refund.text
    async with httpx.AsyncClient(timeout=30) as http:  # the sandbox pays WeChat refunds when told to
        approved = await http.post(f"{control}/refunds/{refund.json()['id']}/approve", params={"mchid": WECHAT_MCHID})
        assert approved.status_code == 200, approved.text
    refunded = await wait_for(lambda: _refund_succeeded(cashier, refund.json()["id"]), "refund.succeeded")
    assert refunded["payment_channel_discount"] == data["channel_discount"]


async def _refund_succeeded(cashier: RunningCashier, refund_id: str) -> dict[str, Any] | None:
    query = select(outbox.c.payload).where(outbox.c.event_type == "refund.succeeded")
    async with cashier.engine.connect() as conn:
        for (payload,) in (await conn.execute(query)).all():
            data: dict[str, Any] = json.loads(payload)["data"]
            if data["refund_id"] == refund_id:
                return data
    return None


async def test_notification_three_times_plus_concurrent_poll_applies_once(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver, notification_tap: NotificationTap
) -> None:
    cashier = await start_cashier(poll_initial_seconds=600)  # the test decides when the poll runs
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    payment = (await cashier.post("/v1/payments", qr_payment())).json()
    notification_tap.hold = True  # the channel's notification is captured, not yet delivered
    await approve(sandboxes, "wechatpay", payment["attempts"][0]["out_trade_no"])
    held = (await wait_for(lambda: notification_tap.for_path("/v1/notify/wechatpay/"), "the notification"))[0]
    assert (await cashier.payment(payment["id"]))["status"] == "processing"

    async with cashier.engine.begin() as conn:  # the attempt's status poll is due now
        await conn.execute(
            attempts.update().where(attempts.c.payment_id == payment["id"]).values(next_poll_at=datetime.now(UTC))
        )
    async with httpx.AsyncClient(base_url=cashier.base_url) as client:
        results = await asyncio.gather(
            *(client.post(held.path, content=held.body, headers=held.headers) for _ in range(3)),
            poll_due(cashier.cashier),
        )
    replies = results[:3]
    assert all(isinstance(r, httpx.Response) and r.status_code in (200, 204) for r in replies)
    notification_tap.hold = False  # the channel's own retries now get through too: still no change

    await cashier.wait_status(payment["id"], "succeeded")
    await wait_for(webhook_receiver.delivered, "the webhook")
    await wait_for(lambda: len(notification_tap.for_path("/v1/notify/wechatpay/")) > 1, "a channel retry")
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1
    deliveries = (await cashier.get(f"/v1/payments/{payment['id']}/webhook-deliveries")).json()["data"]
    assert len(deliveries) == 1
    assert len(webhook_receiver.delivered()) == 1
