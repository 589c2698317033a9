"""The wallet opens chart accounts with the body hash `POST /v1/accounts` would store for the documented
body, so the cashier consumer (or any service) opening the same `chart:` key later finds the account
instead of a 409 "key taken by another body" (which parked real payments before)."""

from __future__ import annotations

from services.ledger.api.schemas import AccountCreateRequest
from services.ledger.domain.chart import CHANNEL_CLEARING, CHANNEL_FEE_EXPENSE, ESCROW_BANK, PLATFORM_FEE_INCOME
from services.ledger.events.postings import channel_clearing, channel_fee_expense, platform_fee_income
from services.ledger.wallet.store.wallet import chart_body


def test_chart_accounts_hash_like_the_api() -> None:
    for spec, entry, metadata in (
        (channel_clearing("wechatpay", "CNY"), CHANNEL_CLEARING, {"channel": "wechatpay"}),
        (channel_fee_expense("alipay", "CNY"), CHANNEL_FEE_EXPENSE, {"channel": "alipay"}),
        (platform_fee_income("CNY"), PLATFORM_FEE_INCOME, {}),
    ):
        api = AccountCreateRequest.model_validate(spec.open_body()).body_hash()
        assert chart_body(spec.holder_id, "CNY", entry, 0, False, metadata).body_hash() == api


def test_flags_and_limits_count() -> None:
    body = {
        "holder_id": "platform",
        "currency": "CNY",
        "kind": "escrow_bank",
        "code": "1102",
        "flags": {"credits_must_not_exceed_debits": True},
        "credit_limit_minor": 5,
    }
    api = AccountCreateRequest.model_validate(body).body_hash()
    assert chart_body("platform", "CNY", ESCROW_BANK, 5, True, {}).body_hash() == api
    assert chart_body("platform", "CNY", ESCROW_BANK, 5, False, {}).body_hash() != api
