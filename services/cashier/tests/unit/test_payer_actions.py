"""One `payer_action` shape per type whatever the channel: what each connector stores, as the API shows it."""

from __future__ import annotations

from typing import Any

import pytest

from services.cashier.domain.payer_actions import normalised_payer_action

FORM = {"action": "https://bank.example/frontTransReq.do", "method": "POST", "fields": {"a": "1"}}
WECHAT_JSAPI = {
    "appId": "wx1",
    "timeStamp": "1",
    "nonceStr": "n",
    "package": "prepay_id=p1",
    "signType": "RSA",
    "paySign": "s",
}


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        # The same type from two channels: the same one field.
        (
            {"type": "qr_code", "code_url": "weixin://x", "sandbox_pay_url": "http://s/p"},
            {"type": "qr_code", "qr_code": "weixin://x", "channel_data": {"sandbox_pay_url": "http://s/p"}},
        ),
        (
            {"type": "qr_code", "qr_code": "https://qr.alipay.com/x"},
            {"type": "qr_code", "qr_code": "https://qr.alipay.com/x", "channel_data": {}},
        ),
        (
            {"type": "redirect", "url": "https://wx/h5"},
            {"type": "redirect", "url": "https://wx/h5", "channel_data": {}},
        ),
        (
            {"type": "redirect", "method": "GET", "url": "https://ali/p", "form": FORM},
            {"type": "redirect", "url": "https://ali/p", "channel_data": {"method": "GET", "form": FORM}},
        ),
        (
            {"type": "redirect", "method": "GET", "url": "https://e/h5", "deep_link": "ecny://pay?x"},
            {"type": "redirect", "url": "https://e/h5", "channel_data": {"method": "GET", "deep_link": "ecny://pay?x"}},
        ),
        (
            {"type": "jsapi", "prepay_id": "p1", **WECHAT_JSAPI},
            {"type": "jsapi", "jsapi_params": WECHAT_JSAPI, "channel_data": {"prepay_id": "p1"}},
        ),
        (
            {"type": "jsapi", "trade_no": "2026x"},
            {"type": "jsapi", "jsapi_params": {"tradeNO": "2026x"}, "channel_data": {"trade_no": "2026x"}},
        ),
        (
            {"type": "app", "order_string": "a=b"},
            {"type": "app", "app_params": {"order_string": "a=b"}, "channel_data": {}},
        ),
        ({"type": "app", "tn": "123"}, {"type": "app", "app_params": {"tn": "123"}, "channel_data": {}}),
        (
            {"type": "form", "form": FORM, "html": "<form/>"},
            {"type": "form", "form": FORM, "channel_data": {"html": "<form/>"}},
        ),
        (
            {"type": "wallet_confirm", "hold_transfer_id": "tr_1", "confirm_path": "/v1/payments/pay_1/confirm"},
            {
                "type": "wallet_confirm",
                "confirm_path": "/v1/payments/pay_1/confirm",
                "channel_data": {"hold_transfer_id": "tr_1"},
            },
        ),
        (
            {"type": "payment_code", "state": "user_paying"},
            {"type": "payment_code", "state": "user_paying", "channel_data": {}},
        ),
    ],
)
def test_each_stored_action_is_shown_in_its_types_one_shape(stored: dict[str, Any], shown: dict[str, Any]) -> None:
    assert normalised_payer_action(stored) == shown
    assert stored.get("type") == shown["type"]  # the stored action is not changed


def test_no_action_stays_none() -> None:
    assert normalised_payer_action(None) is None
