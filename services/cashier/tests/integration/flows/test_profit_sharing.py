"""Channel profit sharing (docs/contracts.md §2): internal channel profit sharing of a paid payment, over real HTTP
against the real WeChat Pay and Alipay sandboxes (real signatures): success, idempotent repeats, another body →
409, payments that cannot be shared, channel refusals, channel down → 503 then a retry with the same order_no
succeeds."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.cashier.connectors.alipay import royalty
from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.base import ChannelError
from services.cashier.connectors.wechatpay import profitsharing as wxps
from services.cashier.connectors.wechatpay.client import WechatPayConnector
from services.cashier.store.tables import profit_sharing_orders

from .conftest import RunningCashier, Sandboxes, approve, paid_payment, qr_payment

WX_RECEIVER = {
    "type": "MERCHANT_ID",
    "account": "1900000301",
    "name": None,
    "amount_minor": 200,
    "description": "platform commission",
}
ALI_RECEIVER = {
    "type": "userId",
    "account": "2088000000000301",
    "name": "Juhe Platform",
    "amount_minor": 250,
    "description": "platform commission",
}


async def _sharing_payment(
    cashier: RunningCashier, sandboxes: Sandboxes, channel: str, amount_minor: int = 1000
) -> dict[str, Any]:
    created = await cashier.post(
        "/v1/payments", qr_payment(amount_minor=amount_minor, preferred_channels=[channel], profit_sharing=True)
    )
    assert created.status_code == 201, created.text
    await approve(sandboxes, channel, created.json()["attempts"][0]["out_trade_no"])
    return await cashier.wait_status(created.json()["id"], "succeeded")


async def _share(
    cashier: RunningCashier, payment_id: str, order_no: str, receivers: list[dict[str, Any]], finish: bool = False
) -> httpx.Response:
    return await cashier.client.post(
        f"/v1/internal/payments/{payment_id}/profit-sharing",
        json={"order_no": order_no, "receivers": receivers, "finish": finish},
    )


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


async def _faults(sandbox_url: str, **faults: Any) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.put(sandbox_url + "/control/faults", json=faults)).status_code == 200


async def _unsplit_minor(cashier: RunningCashier, transaction_id: str) -> int:
    """What WeChat still holds frozen for sharing on the transaction (asked with the merchant's own keys)."""
    connector = await cashier.cashier.connectors.get(cashier.merchant_id, "wechatpay")
    assert isinstance(connector, WechatPayConnector)
    return await wxps.unsplit_amount(connector, transaction_id)


async def _order_rows(cashier: RunningCashier) -> int:
    async with cashier.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(profit_sharing_orders))).scalar_one())


async def test_wechatpay_profit_sharing_idempotent_by_order_no(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    payment = await _sharing_payment(cashier, sandboxes, "wechatpay", amount_minor=1000)
    path = f"/v1/internal/payments/{payment['id']}/profit-sharing"

    first = _ok(await _share(cashier, payment["id"], "split-1", [WX_RECEIVER]))
    assert first["status"] == "succeeded" and first["channel"] == "wechatpay" and first["channel_order_id"]
    assert first["receivers"] == [
        {"account": "1900000301", "amount_minor": 200, "status": "succeeded", "fail_reason": None}
    ]
    assert await _unsplit_minor(cashier, payment["channel_trade_no"]) == 800

    # The same order number and body: the stored order, and the channel shares nothing more.
    assert _ok(await _share(cashier, payment["id"], "split-1", [WX_RECEIVER])) == first
    assert _ok(await cashier.client.get(f"{path}/split-1")) == first
    assert await _unsplit_minor(cashier, payment["channel_trade_no"]) == 800
    # The same order number with another body is a conflict, whatever changed.
    _problem(
        await _share(cashier, payment["id"], "split-1", [{**WX_RECEIVER, "amount_minor": 100}]),
        409,
        "idempotency_key_reused",
    )
    _problem(await _share(cashier, payment["id"], "split-1", [WX_RECEIVER], finish=True), 409, "idempotency_key_reused")
    assert await _order_rows(cashier) == 1

    # Above WeChat's 30 % ratio: the channel refuses the order itself → final `failed`, nothing shared.
    refused = _ok(await _share(cashier, payment["id"], "split-2", [{**WX_RECEIVER, "amount_minor": 101}]))
    assert refused["status"] == "failed" and refused["channel_order_id"] is None
    assert refused["receivers"][0]["status"] == "failed" and refused["receivers"][0]["fail_reason"]
    assert await _unsplit_minor(cashier, payment["channel_trade_no"]) == 800
    _problem(await cashier.client.get(f"{path}/nope"), 404, "profit_sharing_order_not_found")


async def test_wechatpay_channel_down_then_retry_with_the_same_order_no(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(read_timeout_seconds=0.5), priority=1)
    payment = await _sharing_payment(cashier, sandboxes, "wechatpay", amount_minor=1000)

    await _faults(sandboxes.wechat.base_url, dark=True)
    _problem(await _share(cashier, payment["id"], "split-1", [WX_RECEIVER]), 503, "channel_unavailable")
    pending = _ok(await cashier.client.get(f"/v1/internal/payments/{payment['id']}/profit-sharing/split-1"))
    assert pending["status"] == "processing" and pending["receivers"][0]["status"] == "processing"

    await _faults(sandboxes.wechat.base_url, dark=False)
    retried = _ok(await _share(cashier, payment["id"], "split-1", [WX_RECEIVER]))
    assert retried["status"] == "succeeded" and retried["channel_order_id"]
    assert await _unsplit_minor(cashier, payment["channel_trade_no"]) == 800
    assert await _order_rows(cashier) == 1


async def test_concurrent_requests_for_one_order_share_once(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    payment = await _sharing_payment(cashier, sandboxes, "wechatpay", amount_minor=1000)
    answers = await asyncio.gather(*[_share(cashier, payment["id"], "split-c", [WX_RECEIVER]) for _ in range(5)])
    bodies = [_ok(a) for a in answers]
    assert {b["channel_order_id"] for b in bodies} == {bodies[0]["channel_order_id"]}
    assert all(b["status"] == "succeeded" for b in bodies)
    assert await _unsplit_minor(cashier, payment["channel_trade_no"]) == 800
    assert await _order_rows(cashier) == 1


async def test_payments_that_cannot_be_shared(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    plain = await paid_payment(cashier, sandboxes, "wechatpay", 1000)
    _problem(await _share(cashier, plain["id"], "split-1", [WX_RECEIVER]), 409, "profit_sharing_not_enabled")

    unpaid = await cashier.post("/v1/payments", qr_payment(amount_minor=1000, profit_sharing=True))
    assert unpaid.status_code == 201, unpaid.text
    _problem(await _share(cashier, unpaid.json()["id"], "split-1", [WX_RECEIVER]), 409, "payment_not_succeeded")
    _problem(
        await _share(cashier, "pay_0123456789abcdef0123456789abcdef", "split-1", [WX_RECEIVER]),
        404,
        "payment_not_found",
    )
    _problem(
        await cashier.client.get("/v1/internal/payments/pay_0123456789abcdef0123456789abcdef/profit-sharing/x"),
        404,
        "payment_not_found",
    )
    for bad in (
        {"order_no": "bad order", "receivers": [WX_RECEIVER], "finish": False},
        {"order_no": "o" * 65, "receivers": [WX_RECEIVER], "finish": False},
        {"order_no": "split-1", "receivers": [], "finish": False},
        {"order_no": "split-1", "receivers": [{**WX_RECEIVER, "amount_minor": 0}], "finish": False},
        {"order_no": "split-1", "receivers": [WX_RECEIVER, WX_RECEIVER], "finish": False},
        {"order_no": "split-1", "receivers": [WX_RECEIVER]},
    ):
        response = await cashier.client.post(f"/v1/internal/payments/{plain['id']}/profit-sharing", json=bad)
        _problem(response, 422, "validation_failed")
    assert await _order_rows(cashier) == 0


async def test_alipay_royalty_idempotent_finish_and_channel_down(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    payment = await _sharing_payment(cashier, sandboxes, "alipay", amount_minor=1000)
    path = f"/v1/internal/payments/{payment['id']}/profit-sharing"

    await _faults(sandboxes.alipay.base_url, error_rate=1.0)
    _problem(await _share(cashier, payment["id"], "royalty-1", [ALI_RECEIVER]), 503, "channel_unavailable")
    await _faults(sandboxes.alipay.base_url, error_rate=0.0)

    first = _ok(await _share(cashier, payment["id"], "royalty-1", [ALI_RECEIVER]))
    assert first["status"] == "succeeded" and first["channel"] == "alipay" and first["channel_order_id"]
    assert first["receivers"] == [
        {"account": ALI_RECEIVER["account"], "amount_minor": 250, "status": "succeeded", "fail_reason": None}
    ]
    assert _ok(await _share(cashier, payment["id"], "royalty-1", [ALI_RECEIVER])) == first
    assert _ok(await cashier.client.get(f"{path}/royalty-1")) == first
    _problem(
        await _share(cashier, payment["id"], "royalty-1", [{**ALI_RECEIVER, "amount_minor": 1}]),
        409,
        "idempotency_key_reused",
    )

    # The last split releases the rest to the merchant; Alipay refuses any split after it.
    last = _ok(await _share(cashier, payment["id"], "royalty-2", [{**ALI_RECEIVER, "amount_minor": 100}], finish=True))
    assert last["status"] == "succeeded"
    after = _ok(await _share(cashier, payment["id"], "royalty-3", [{**ALI_RECEIVER, "amount_minor": 100}]))
    assert after["status"] == "failed" and after["receivers"][0]["fail_reason"] == "ACQ.TRADE_SETTLE_ERROR"
    assert await _order_rows(cashier) == 3


async def test_alipay_payment_without_royalty_freeze_is_refused(start_cashier: Any, sandboxes: Sandboxes) -> None:
    cashier = await start_cashier()
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
    plain = await paid_payment(cashier, sandboxes, "alipay", 1000)
    _problem(await _share(cashier, plain["id"], "royalty-1", [ALI_RECEIVER]), 409, "profit_sharing_not_enabled")
    assert await _order_rows(cashier) == 0


async def test_channels_refuse_sharing_a_trade_not_frozen_for_it(start_cashier: Any, sandboxes: Sandboxes) -> None:
    """The sandboxes remember `settle_info.profit_sharing` / `royalty_freeze` per trade, as the channels do:
    asked directly (bypassing the cashier's own 409), they refuse to share a trade created without it."""
    cashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    wechat_plain = await paid_payment(cashier, sandboxes, "wechatpay", 1000)
    alipay_plain = await paid_payment(cashier, sandboxes, "alipay", 1000)

    wechat = await cashier.cashier.connectors.get(cashier.merchant_id, "wechatpay")
    assert isinstance(wechat, WechatPayConnector)
    await wxps.add_receiver(wechat, type="MERCHANT_ID", account="1900000301", relation_type="PARTNER")
    with pytest.raises(ChannelError) as refused:
        await wxps.create_order(
            wechat,
            transaction_id=wechat_plain["channel_trade_no"],
            out_order_no="direct-1",
            receivers=[wxps.ShareReceiver("MERCHANT_ID", "1900000301", 100, "x")],
            unfreeze_unsplit=False,
        )
    assert refused.value.code == "INVALID_REQUEST"

    alipay = await cashier.cashier.connectors.get(cashier.merchant_id, "alipay")
    assert isinstance(alipay, AlipayConnector)
    await royalty.bind_receivers(alipay, out_request_no="bind-direct-1", receivers=[("userId", "2088000000000301")])
    with pytest.raises(ChannelError) as refused:
        await royalty.settle(
            alipay,
            out_request_no="direct-1",
            trade_no=alipay_plain["channel_trade_no"],
            lines=[royalty.RoyaltyLine("2088000000000301", 100, "x")],
            finish=False,
        )
    assert refused.value.code == "ACQ.TRADE_SETTLE_ERROR"
