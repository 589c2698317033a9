"""付款码 through the gateway, every part a real process (`python -m deploy.launcher run`).

The demo merchant's signed key (the Python SDK) creates `scene: payment_code` payments with codes the
WeChat Pay and Alipay sandboxes' payers show: each code is charged on its own channel, a password step
succeeds once the payer confirms (the cashier worker polls), and an unconfirmed code is reversed at the
(shortened) deadline: closed, nothing charged, and the ledger posts nothing for it.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))
from juhe_sdk import APIError, Client

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.services import SERVICES
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from tests.e2e.test_launcher import Launched, eventually

pytestmark = pytest.mark.e2e


def _route_barcode(routing_url: str, merchant_id: str) -> None:
    """An operator offers the 付款码 product (routing scene `barcode`) on one route per channel; the demo seed
    routes only the online scenes."""
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="e2e-operator", platform="plt_demo")
    with httpx.Client(
        base_url=routing_url, headers={IDENTITY_HEADER: token, "X-Juhe-Actor": "ops@e2e"}, timeout=10
    ) as routing:
        for route_id, method, connector in (("ali_pos", "alipay", "alipay"), ("wx_pos", "wechat", "wechatpay")):
            for response in (
                routing.post(
                    "/v1/channel-routes",
                    json={
                        "route_id": route_id,
                        "method": method,
                        "kind": "direct",
                        "provider": connector,
                        "connector": connector,
                        "config_ref": f"demo/{connector}",
                        "scenes": ["barcode"],
                    },
                ),
                routing.post(
                    "/v1/fee-rates",
                    json={"route_id": route_id, "rate_bps": 38, "valid_from": "2026-01-01T00:00:00+08:00"},
                ),
                routing.put(f"/v1/contracts/{merchant_id}/{route_id}", json={"sub_merchant_id": f"sub_{route_id}"}),
            ):
                assert response.status_code in (200, 201), response.text


def test_payment_codes_through_the_gateway(demo_platform: Launched) -> None:
    platform = demo_platform  # its payment-code deadline is 8 s (DEMO_PLATFORM_ENV)
    keys = json.loads((platform.data_dir / "demo-keys.json").read_text())
    _route_barcode(platform.url("routing"), keys["merchant_id"])
    merchant = Client(platform.url("gateway"), key_id=keys["key_id"], secret=keys["secret"])

    def code(channel: str, **extra: Any) -> str:
        shown = httpx.post(platform.url(channel) + "/control/payer-codes", json=extra, timeout=10)
        assert shown.status_code == 200, shown.text
        return str(shown.json()["auth_code"])

    def pay(auth_code: str) -> dict[str, Any]:
        return dict(
            merchant.payments.create(
                merchant_order_no=f"gate-{uuid.uuid4().hex[:12]}",
                amount_minor=880,
                currency="CNY",
                description="Parking, gate 3",
                scene="payment_code",
                auth_code=auth_code,
            )
        )

    def ledger_transfers(payment_id: str) -> int:
        sql = (
            f"SELECT count(*) AS n FROM transfers WHERE idempotency_key LIKE '%{payment_id}%' "
            f"OR reference LIKE '%{payment_id}%' OR metadata::text LIKE '%{payment_id}%'"
        )
        database = SERVICES["ledger"].database
        assert database is not None
        rows = platform.query(database, sql)
        return int(rows[0]["n"])

    def reaches(payment_id: str, status: str) -> dict[str, Any]:
        return dict(
            eventually(
                lambda: (p := merchant.payments.retrieve(payment_id))["status"] == status and p,
                f"payment {payment_id} to be {status}",
            )
        )

    for channel in ("wechatpay", "alipay"):  # charged at once, on the code's own channel and route
        paid = pay(code(channel))
        assert (paid["status"], paid["channel"]) == ("succeeded", channel), paid
        assert paid["route_id"] == ("wx_pos" if channel == "wechatpay" else "ali_pos")

    waiting = pay(code("alipay", password_required=True))  # the payer must enter the password
    assert waiting["status"] == "processing", waiting
    out_trade_no = waiting["attempts"][0]["out_trade_no"]
    approved = httpx.post(f"{platform.url('alipay')}/control/trades/{out_trade_no}/approve", timeout=10)
    assert approved.status_code == 200, approved.text
    reaches(waiting["id"], "succeeded")

    unconfirmed = pay(code("wechatpay", password_required=True))  # never confirmed: reversed
    closed = reaches(unconfirmed["id"], "closed")
    assert closed["failure_code"] == "payment_code_timeout" and closed["refundable_minor"] == 0
    order = httpx.get(
        f"{platform.url('wechatpay')}/control/orders/{unconfirmed['attempts'][0]['out_trade_no']}", timeout=10
    )
    assert order.json()["order"]["trade_state"] == "REVOKED"
    # The ledger posts the paid code (payment.succeeded) and nothing for the reversed one.
    eventually(lambda: ledger_transfers(paid["id"]) > 0, "the ledger's posting of the paid code")
    assert ledger_transfers(unconfirmed["id"]) == 0

    with pytest.raises(APIError) as refused:
        pay("6212345678901234567")  # UnionPay's code: no connector path yet
    assert refused.value.code == "payment_code_not_supported"
