"""Checkout rules: page tokens, expiry bounds, the signed return (and the SDK's verification of it)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from libs.common.errors import Problem
from libs.common.services import REPO_ROOT
from services.cashier.domain import checkout as rules

sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))
from juhe_sdk import verify_checkout_return


def test_the_page_token_is_256_bits_derived_from_the_id_and_not_the_id() -> None:
    token = rules.page_token("secret-a", "cs_1")
    assert token.startswith("cst_") and len(token) == 4 + 43
    assert token == rules.page_token("secret-a", "cs_1")  # answered again by GET and replays
    assert token != rules.page_token("secret-b", "cs_1") != rules.page_token("secret-a", "cs_2")
    assert "cs_1" not in token and len(rules.token_digest(token)) == 64


def test_expiry_defaults_to_15_minutes_and_stays_within_the_channels_limit() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    assert rules.resolve_expiry(now, None, channel_max_seconds=86400) == now + timedelta(minutes=15)
    assert rules.resolve_expiry(now, 60, channel_max_seconds=86400) == now + timedelta(seconds=60)
    for bad in (59, 86401):
        with pytest.raises(Problem) as caught:
            rules.resolve_expiry(now, bad, channel_max_seconds=86400)
        assert caught.value.spec is rules.CHECKOUT_EXPIRY_OUT_OF_RANGE
    with pytest.raises(Problem):
        rules.resolve_expiry(now, 7200, channel_max_seconds=3600)


def test_the_return_signature_verifies_in_the_sdk_and_refuses_tampering_and_age() -> None:
    params = {
        "checkout_session_id": "cs_1",
        "merchant_order_no": "A&B=1",
        "status": "completed",
        "amount_minor": "2500",
        "currency": "CNY",
        "payment_id": "pay_1",
        "t": "1000",
    }
    params["sig"] = rules.sign_return("whsec_x", params)
    assert rules.verify_return("whsec_x", params, now=1100)
    assert verify_checkout_return(params, "whsec_x", now=1100)
    assert not verify_checkout_return({**params, "amount_minor": "1"}, "whsec_x", now=1100)
    assert not verify_checkout_return(params, "whsec_y", now=1100)
    assert not verify_checkout_return(params, "whsec_x", now=1000 + 301)
    assert not verify_checkout_return({k: v for k, v in params.items() if k != "payment_id"}, "whsec_x", now=1100)


def test_unionpay_is_paid_on_its_consume_page_where_the_page_would_show_a_qr() -> None:
    assert rules.channel_scene("unionpay", "native_qr") == "page"  # its desktop product is a posted form
    assert rules.channel_scene("unionpay", "h5") == "h5"
    assert rules.channel_scene("alipay", "native_qr") == "native_qr"
    assert rules.channel_scene("wallet", "native_qr") == "wallet"
    assert "native_qr" not in rules.PAGE_SCENES["unionpay"]
