"""The internal re-query settlement uses when a channel bill shows a payment paid that Juhe did not see paid."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import RunningCashier, Sandboxes, approve, qr_payment


async def test_requery_applies_what_the_channel_says_now_once(start_cashier: Any, sandboxes: Sandboxes) -> None:
    # No notification can arrive (a dead notify URL) and polling waits an hour: only the re-query can tell.
    cashier: RunningCashier = await start_cashier(public_base_url="http://127.0.0.1:1", poll_initial_seconds=3600)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    created = await cashier.post("/v1/payments", qr_payment(amount_minor=2500))
    assert created.status_code == 201, created.text
    payment = created.json()
    await approve(sandboxes, "wechatpay", payment["attempts"][0]["out_trade_no"])
    assert (await cashier.payment(payment["id"]))["status"] == "processing"

    for _ in range(2):  # a repeated re-query changes nothing more
        r = await cashier.client.post(f"/v1/internal/payments/{payment['id']}/requery")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "succeeded" and r.json()["channel_trade_no"]
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1

    missing = await cashier.client.post("/v1/internal/payments/pay_nope/requery")
    assert missing.status_code == 404 and missing.json()["code"] == "payment_not_found"


async def test_requery_keeps_a_declined_payment_declined(start_cashier: Any, sandboxes: Sandboxes) -> None:
    """The channel's own answer wins over a bill line: a payment it still calls declined stays failed."""
    cashier: RunningCashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    created = (await cashier.post("/v1/payments", qr_payment(amount_minor=700))).json()
    out_trade_no = created["attempts"][0]["out_trade_no"]
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{sandboxes.wechat.base_url}/control/orders/{out_trade_no}/decline",
            params={"mchid": sandboxes.wechat_config()["mchid"]},
        )
    assert r.status_code == 200, r.text
    await cashier.wait_status(created["id"], "failed")
    r = await cashier.client.post(f"/v1/internal/payments/{created['id']}/requery")
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert await cashier.outbox_count("payment.succeeded", created["id"]) == 0
