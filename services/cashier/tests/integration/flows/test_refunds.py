"""Refunds: partial and repeated up to the refundable amount, safe under concurrency, by notification too."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from .conftest import WECHAT_MCHID, Sandboxes, WebhookReceiver, paid_payment, wait_for


async def test_partial_refunds_then_refused_when_exceeding_remaining(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)

    first = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 30})
    second = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 50, "reason": "damaged"})
    assert first.status_code == 201 and first.json()["status"] == "succeeded", first.text
    assert second.status_code == 201 and second.json()["status"] == "succeeded", second.text

    third = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 30})
    assert third.status_code == 409
    assert third.headers["content-type"].startswith("application/problem+json")
    assert third.json()["code"] == "refund_exceeds_remaining" and third.json()["refundable_minor"] == 20

    after = await cashier.payment(payment["id"])
    assert after["refunded_minor"] == 80 and after["refundable_minor"] == 20
    listed = (await cashier.get(f"/v1/payments/{payment['id']}/refunds")).json()["data"]
    assert sorted(r["amount_minor"] for r in listed) == [30, 50]
    one = await cashier.get(f"/v1/refunds/{first.json()['id']}")
    assert one.status_code == 200 and one.json()["amount_minor"] == 30
    assert await cashier.outbox_count("refund.succeeded") == 2


async def test_ten_concurrent_refunds_of_20_on_100_exactly_five_succeed(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)

    answers = await asyncio.gather(
        *(cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 20}) for _ in range(10))
    )
    accepted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 409]
    assert len(accepted) == 5 and len(refused) == 5, [a.status_code for a in answers]
    assert all(a.json()["code"] == "refund_exceeds_remaining" for a in refused)
    assert all(a.json()["status"] == "succeeded" for a in accepted)
    after = await cashier.payment(payment["id"])
    assert after["refunded_minor"] == 100 and after["refundable_minor"] == 0
    assert await cashier.outbox_count("refund.succeeded") == 5


async def test_refund_of_unpaid_payment_and_repeated_merchant_refund_number(
    start_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    unpaid = (
        await cashier.post(
            "/v1/payments",
            {
                "merchant_order_no": "unpaid-1",
                "amount_minor": 100,
                "currency": "CNY",
                "description": "x",
                "scene": "native_qr",
            },
        )
    ).json()
    refused = await cashier.post(f"/v1/payments/{unpaid['id']}/refunds", {"amount_minor": 10})
    assert refused.status_code == 409 and refused.json()["code"] == "payment_not_refundable"

    payment = await paid_payment(cashier, sandboxes, "alipay", 100)
    body = {"amount_minor": 10, "merchant_refund_no": "rf-1"}
    first = await cashier.post(f"/v1/payments/{payment['id']}/refunds", body)
    again = await cashier.post(f"/v1/payments/{payment['id']}/refunds", body)
    assert first.status_code == 201 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {**body, "amount_minor": 11})
    assert other.status_code == 409 and other.json()["code"] == "duplicate_merchant_refund"
    assert (await cashier.payment(payment["id"]))["refunded_minor"] == 10


async def test_retried_refund_request_key_makes_one_refund(start_cashier: Any, sandboxes: Sandboxes) -> None:
    """Without a merchant refund number, the request's Idempotency-Key (forwarded by the gateway) is what a
    retry is matched by: the gateway frees a key whose request got a 5xx although the cashier may have
    committed the refund (found by tests/e2e/test_faults.py: a retry after a cashier crash refunded twice)."""
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    payment = await paid_payment(cashier, sandboxes, "alipay", 100)
    path = f"/v1/payments/{payment['id']}/refunds"

    async def refund(key: str, amount_minor: int = 10) -> httpx.Response:
        headers = {**cashier.headers(), "Idempotency-Key": key}
        return await cashier.client.post(path, json={"amount_minor": amount_minor}, headers=headers)

    answers = await asyncio.gather(*(refund("key-1") for _ in range(5)))  # a retry racing the first try
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    other = await refund("key-1", amount_minor=11)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert (await refund("key-2")).status_code == 201  # another key is another refund
    assert len((await cashier.get(path)).json()["data"]) == 2
    assert (await cashier.payment(payment["id"]))["refundable_minor"] == 80


async def test_wechat_refund_settles_by_channel_notification(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    """Also with a live WeChat Pay configuration beside the test one (127.0.0.1 is the only sandbox host, so the same
    sandbox reached as `localhost` is a "real" channel): the test payment's refund goes to the test configuration,
    named by the refund's mode, instead of being refused as ambiguous and left pending; a transfer names its money's
    mode the same way."""
    cashier = await start_cashier(poll_initial_seconds=600, sandbox_hosts=["127.0.0.1"])  # the notification settles
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    live = sandboxes.wechat_config(base_url=sandboxes.wechat.base_url.replace("127.0.0.1", "localhost"))
    await cashier.configure("wechatpay", live, priority=1)
    modes = (await cashier.get(f"/v1/admin/merchants/{cashier.merchant_id}/channels")).json()
    assert sorted(c["mode"] for c in modes) == ["live", "test"]
    payment = await paid_payment(cashier, sandboxes, "wechatpay", 100)
    assert payment["livemode"] is False
    created = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": 40})
    assert created.status_code == 201 and created.json()["status"] == "pending", created.text
    assert created.json()["livemode"] is False
    refund_id = created.json()["id"]

    async with httpx.AsyncClient() as client:
        approved = await client.post(
            f"{sandboxes.wechat.base_url}/control/refunds/{refund_id}/approve", params={"mchid": WECHAT_MCHID}
        )
    assert approved.status_code == 200, approved.text

    async def settled() -> bool:
        return bool((await cashier.get(f"/v1/refunds/{refund_id}")).json()["status"] == "succeeded")

    await wait_for(settled, "the refund to succeed")
    assert (await cashier.payment(payment["id"]))["refunded_minor"] == 40
    hooks = await wait_for(lambda: len(webhook_receiver.delivered()) >= 2 and webhook_receiver.delivered(), "hooks")
    import json

    types = [json.loads(h.body)["type"] for h in hooks]
    assert types == ["payment.succeeded", "refund.succeeded"]  # in order per payment

    # A transfer (settlement's payout rail) names its money's mode the same way; without one it is not a guess.
    out_no = uuid.uuid4().hex[:20]
    transfer = {
        "merchant_id": cashier.merchant_id,
        "channel": "wechatpay",
        "out_transfer_no": out_no,
        "amount_minor": 100,
        "currency": "CNY",
        "payee": "o_payee_openid",
        "remark": "payout",
    }
    unnamed = await cashier.post("/v1/internal/transfers", transfer)
    assert (unnamed.status_code, unnamed.json()["code"]) == (422, "no_route_available"), unnamed.text
    sent = await cashier.post("/v1/internal/transfers", {**transfer, "livemode": False})
    assert sent.status_code == 200 and sent.json()["status"] == "waiting_user", sent.text
    asked = await cashier.client.get(
        f"/v1/internal/transfers/wechatpay/{out_no}", params={"merchant_id": cashier.merchant_id, "livemode": "false"}
    )
    assert asked.json()["channel_transfer_no"] == sent.json()["channel_transfer_no"], asked.text
