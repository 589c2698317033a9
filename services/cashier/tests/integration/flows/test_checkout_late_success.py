"""A payer who pays a checkout session twice, or after it ended, gets the extra money back automatically, once.

Real cashier, PostgreSQL and channel sandboxes. Alipay's precreate QR stays payable after Juhe closed it (no
trade exists at Alipay until it is scanned), so paying an old Alipay QR is a real late success. The three
orders of "the old QR is paid" against "the session is completed / expired" end in one state each: one payment
keeps the money, every other success is refunded in full exactly once (merchant refund number `late.<id>`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.cashier.flows.checkout import LATE_REFUND_REASON, refund_late_successes

from .conftest import WECHAT_MCHID, RunningCashier, Sandboxes, approve, wait_for

AMOUNT_MINOR = 1_800
PAGES_ORIGIN = "https://pay.example.com"


async def _ready(start_cashier: Any, sandboxes: Sandboxes) -> RunningCashier:
    # The payers' origin differs from every address the cashier itself uses (a gateway behind a load balancer).
    cashier: RunningCashier = await start_cashier(checkout_base_url=PAGES_ORIGIN)
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    return cashier


async def _open_session(cashier: RunningCashier) -> tuple[dict[str, Any], str]:
    body = {
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}",
        "amount_minor": AMOUNT_MINOR,
        "currency": "CNY",
        "description": "Parking",
        "return_url": "https://shop.example/return",
    }
    created = await cashier.post("/v1/checkout/sessions", body)
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["url"].startswith(f"{PAGES_ORIGIN}/checkout/cst_")
    return session, urlsplit(session["url"]).path.rsplit("/", 1)[1]


async def _pay(cashier: RunningCashier, token: str, method: str) -> dict[str, Any]:
    response = await cashier.client.post(
        f"/v1/checkout/pages/{token}/payments",
        json={"method": method, "scene": "native_qr", "request_id": f"req-{uuid.uuid4().hex[:12]}"},
    )
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()["payment"]
    return payment


async def _out_trade_no(cashier: RunningCashier, payment_id: str) -> str:
    return str((await cashier.payment(payment_id))["attempts"][0]["out_trade_no"])


async def _refunds(cashier: RunningCashier, payment_id: str) -> list[dict[str, Any]]:
    response = await cashier.get(f"/v1/payments/{payment_id}/refunds")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def _session_state(cashier: RunningCashier, session_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view: dict[str, Any] = (await cashier.get(f"/v1/checkout/sessions/{session_id}")).json()
        return view if view["status"] == status else None

    return await wait_for(reached, f"the session to be {status}")


async def _refunded_once(cashier: RunningCashier, payment_id: str) -> dict[str, Any]:
    async def refunded() -> list[dict[str, Any]] | None:
        found = await _refunds(cashier, payment_id)
        return found if found and found[0]["status"] == "succeeded" else None

    refunds = await wait_for(refunded, f"the late success {payment_id} to be refunded")
    assert len(refunds) == 1, refunds
    refund = refunds[0]
    assert refund["merchant_refund_no"] == f"late.{payment_id}" and refund["amount_minor"] == AMOUNT_MINOR
    assert refund["reason"] == LATE_REFUND_REASON
    return refund


async def test_late_successes_are_refunded_once_in_any_order(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await _ready(start_cashier, sandboxes)

    # 1. the session is completed by the live payment, then the payer also pays the old (closed) QR
    first, token = await _open_session(cashier)
    old = await _pay(cashier, token, "alipay")
    live = await _pay(cashier, token, "wechatpay")  # closes the Alipay payment; its QR stays payable at Alipay
    assert (await cashier.payment(old["id"]))["status"] == "closed"
    await approve(sandboxes, "wechatpay", await _out_trade_no(cashier, live["id"]))
    completed = await _session_state(cashier, first["id"], "completed")
    assert completed["payment_id"] == live["id"]
    await approve(sandboxes, "alipay", await _out_trade_no(cashier, old["id"]))
    late = await cashier.wait_status(old["id"], "succeeded")
    assert late["late_success"] is True
    await _refunded_once(cashier, old["id"])
    refunded = [old["id"]]
    assert await _refunds(cashier, live["id"]) == []
    assert (await cashier.get(f"/v1/checkout/sessions/{first['id']}")).json()["payment_id"] == live["id"]

    # 2. the old QR is paid while the session is still open with another live payment: that money completes
    #    the session, the live payment is closed at its channel (its QR refused), nothing is refunded
    second, token = await _open_session(cashier)
    old = await _pay(cashier, token, "alipay")
    live = await _pay(cashier, token, "wechatpay")
    await approve(sandboxes, "alipay", await _out_trade_no(cashier, old["id"]))
    completed = await _session_state(cashier, second["id"], "completed")
    assert completed["payment_id"] == old["id"]
    assert (await cashier.payment(live["id"]))["status"] == "closed"
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"{sandboxes.wechat.base_url}/control/orders/{await _out_trade_no(cashier, live['id'])}/approve",
            params={"mchid": WECHAT_MCHID},
        )
    assert refused.status_code >= 400
    assert await _refunds(cashier, old["id"]) == [] and await _refunds(cashier, live["id"]) == []
    assert await cashier.outbox_count("checkout.session.completed", second["id"]) == 1

    # 3. the session expires (the merchant ends it; its live QR closed), then the payer pays that QR
    third, token = await _open_session(cashier)
    old = await _pay(cashier, token, "alipay")
    expired = await cashier.post(f"/v1/checkout/sessions/{third['id']}/expire")
    assert expired.status_code == 200 and expired.json()["status"] == "expired"
    await approve(sandboxes, "alipay", await _out_trade_no(cashier, old["id"]))
    await _refunded_once(cashier, old["id"])
    refunded.append(old["id"])
    view = (await cashier.get(f"/v1/checkout/sessions/{third['id']}")).json()
    assert view["status"] == "expired" and view["payment_id"] is None

    # Rounds run again, concurrently (two replicas), refund nothing more.
    await asyncio.gather(refund_late_successes(cashier.cashier), refund_late_successes(cashier.cashier))
    for payment_id in refunded:
        assert len(await _refunds(cashier, payment_id)) == 1
    assert await cashier.outbox_count("checkout.session.expired", third["id"]) == 1
