"""The channels' own coupons read from their payment results: who funded them and what the merchant is not
settled (docs/marketing.md "Channel coupons"), tolerant of junk."""

from __future__ import annotations

import json

from services.cashier.connectors.alipay.models import voucher_discounts
from services.cashier.connectors.base import ChannelDiscount, channel_discount_summary
from services.cashier.connectors.wechatpay.mapping import channel_discounts


def test_wechat_promotion_detail_by_contributor_and_nocash() -> None:
    found = channel_discounts(
        [
            {
                "coupon_id": "c1",
                "stock_id": "s1",
                "type": "CASH",
                "amount": 500,
                "wechatpay_contribute": 500,
                "merchant_contribute": 0,
                "other_contribute": 0,
            },
            {
                "coupon_id": "c2",
                "stock_id": "s2",
                "type": "NOCASH",
                "amount": 300,
                "wechatpay_contribute": 0,
                "merchant_contribute": 300,
                "other_contribute": 0,
            },
            {"coupon_id": "c3", "amount": 0},
            {"amount": 100},
            "junk",
        ]
    )
    assert found == (
        ChannelDiscount("c1", 500, 500, 0, 0, "s1", "CASH"),
        ChannelDiscount("c2", 300, 0, 300, 300, "s2", "NOCASH"),
    )
    assert channel_discounts(None) == ()
    summary = channel_discount_summary(found)
    assert summary is not None and (summary["discount_minor"], summary["unsettled_minor"]) == (800, 300)
    assert channel_discount_summary(()) is None


def test_alipay_voucher_detail_list_as_list_or_json_string() -> None:
    vouchers = [
        {
            "id": "v1",
            "type": "ALIPAY_BIZ_VOUCHER",
            "amount": "10.00",
            "merchant_contribute": "10.00",
            "other_contribute": "0.00",
            "template_id": "act1",
        },
        {
            "id": "v2",
            "type": "ALIPAY_FIX_VOUCHER",
            "amount": "5.00",
            "merchant_contribute": "0.00",
            "other_contribute": "5.00",
        },
        {"id": "v3", "amount": "x"},
    ]
    expected = (
        ChannelDiscount("v1", 1000, 0, 1000, 1000, "act1", "ALIPAY_BIZ_VOUCHER"),
        ChannelDiscount("v2", 500, 500, 0, 0, None, "ALIPAY_FIX_VOUCHER"),
    )
    assert voucher_discounts(vouchers) == expected
    assert voucher_discounts(json.dumps(vouchers)) == expected
    assert voucher_discounts("{not json") == () and voucher_discounts(None) == ()
