"""Alipay page pay through the cashier, as a browser would do it, then refunds on the same payment."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import RunningCashier, Sandboxes, WebhookReceiver, approve, qr_payment, wait_for


async def test_alipay_page_pay_then_partial_refunds(
    start_cashier: Any, sandboxes: Sandboxes, webhook_receiver: WebhookReceiver
) -> None:
    cashier: RunningCashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    created = await cashier.post(
        "/v1/payments", qr_payment(amount_minor=100, scene="page", return_url="https://shop.example/done")
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    action = payment["payer_action"]
    assert action["type"] == "redirect" and action["url"].startswith(sandboxes.alipay.base_url)

    # The browser follows the signed redirect to the sandbox's cashier page: the trade now exists.
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as browser:
        page = await browser.get(action["url"])
    assert page.status_code == 200 and "/pay/cashier/" in str(page.url)

    await approve(sandboxes, "alipay", payment["attempts"][0]["out_trade_no"])
    succeeded = await cashier.wait_status(payment["id"], "succeeded")
    assert succeeded["refundable_minor"] == 100
    await wait_for(webhook_receiver.delivered, "the merchant webhook")

    statuses = []
    for amount in (30, 50, 30):
        r = await cashier.post(f"/v1/payments/{payment['id']}/refunds", {"amount_minor": amount})
        statuses.append((r.status_code, r.json().get("code")))
    assert statuses[0][0] in (200, 201, 202) and statuses[1][0] in (200, 201, 202)
    assert statuses[2] == (409, "refund_exceeds_remaining")
    after = (await cashier.get(f"/v1/payments/{payment['id']}")).json()
    assert after["refundable_minor"] == 20
