"""The channel of a payer-presented code (付款码) from its digits (base.payment_code_channel)."""

from __future__ import annotations

import pytest

from services.cashier.connectors.base import payment_code_channel


@pytest.mark.parametrize(
    ("code", "channel"),
    [
        ("134567890123456789", "wechatpay"),  # 18 digits, 10..15
        ("104567890123456789", "wechatpay"),
        ("154567890123456789", "wechatpay"),
        ("2812345678901234", "alipay"),  # 16..24 digits, 25..30
        ("286543210987654321", "alipay"),
        ("301234567890123456789012", "alipay"),
        ("6212345678901234567", "unionpay"),  # 19 digits, 62
        ("164567890123456789", None),  # 16 is nobody's
        ("13456789012345678", None),  # WeChat codes are exactly 18 digits
        ("2412345678901234", None),
        ("3112345678901234", None),
        ("281234567890123", None),  # 15 digits: too short for Alipay
        ("2812345678901234567890123", None),  # 25: too long
        ("13456789012345678a", None),
        ("１３4567890123456789", None),  # full-width digits are not a scanned code
        ("", None),
    ],
)
def test_payment_code_channel(code: str, channel: str | None) -> None:
    assert payment_code_channel(code) == channel
