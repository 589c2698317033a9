"""Onboarding's step machine, the settlement account name rule, and what a suspension refuses (no I/O)."""

from __future__ import annotations

import functools

import pytest
from pydantic import SecretStr, ValidationError

from gateway.api.onboarding_schemas import OnboardingCreateRequest
from gateway.config import DEMO_IDENTITY_SECRET, Settings
from gateway.domain import onboarding as rules
from gateway.domain.access import Principal
from gateway.domain.onboarding import Outcome, Reason
from gateway.domain.suspension import suspendable_merchant
from gateway.flows.onboarding_partner import public_part, template_problems
from libs.common.errors import Problem


def test_steps_run_in_order_and_activate_only_when_all_are_verified() -> None:
    steps = rules.initial_steps()
    assert rules.next_step(steps) == "kyc" and rules.overall_status(steps) == "processing"
    for name in rules.STEPS[1:]:
        assert not rules.ready_to_activate(steps)
        steps = rules.apply_outcome(steps, rules.next_step(steps) or name, Outcome("verified"))
    assert rules.next_step(steps) is None and rules.ready_to_activate(steps)
    live = rules.activated(steps)
    assert rules.overall_status(live) == "active" and {s["status"] for s in live.values()} == {"active"}


def test_a_rejection_stops_the_run_and_a_retry_reopens_only_the_rejected_step() -> None:
    reason = Reason("bank_account_name_mismatch", "not the merchant's account", field="settlement_account")
    steps = rules.apply_outcome(rules.initial_steps(), "kyc", Outcome("rejected", (reason,)))
    assert rules.next_step(steps) is None and rules.overall_status(steps) == "rejected"
    with pytest.raises(ValueError):
        rules.activated(steps)
    reopened = rules.reopened(steps)
    assert reopened["kyc"]["status"] == "pending" and reopened["kyc"]["round"] == 1
    assert reopened["kyc"]["previous_reasons"][0]["code"] == "bank_account_name_mismatch"
    assert reopened["identity"]["status"] == "verified" and rules.next_step(reopened) == "kyc"


def test_a_transient_failure_keeps_the_step_pending_with_its_error_and_backs_off_boundedly() -> None:
    steps = rules.apply_outcome(rules.initial_steps(), "kyc", Outcome("retry", (Reason("service_unavailable", "x"),)))
    assert steps["kyc"]["status"] == "pending" and steps["kyc"]["last_error"]["code"] == "service_unavailable"
    assert steps["kyc"]["attempts"] == 1
    assert [rules.retry_delay_seconds(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert rules.retry_delay_seconds(1000) == rules.RETRY_DELAY_SECONDS_MAX
    with pytest.raises(ValueError):
        rules.apply_outcome(steps, "identity", Outcome("verified"))  # not pending


@pytest.mark.parametrize(
    ("entity_type", "account_name", "ok"),
    [
        ("company", "茶馆有限公司", True),
        ("company", "张三", False),  # a company settles to its own (对公) account
        ("individual", "张三", True),
        ("individual", "茶馆有限公司", False),
        ("individual_business", "茶馆有限公司", True),  # 个体工商户: the business's or the owner's
        ("individual_business", "张三", True),
        ("individual_business", "李四", False),
    ],
)
def test_money_settles_only_to_the_merchants_own_account(entity_type: str, account_name: str, ok: bool) -> None:
    reasons = rules.account_name_reasons(
        entity_type, legal_name="茶馆有限公司", representative_name="张三", account_name=account_name
    )
    assert (reasons == ()) is ok
    assert all(r.code == "bank_account_name_mismatch" for r in reasons)


MERCHANT = Principal("merchant", "key_1", "plt_1", merchant_id="mch_1")
PLATFORM_FOR_MERCHANT = Principal("platform", "key_2", "plt_1", merchant_id="mch_1")
USER_OF_MERCHANT = Principal("user", "utk_1", "plt_1", merchant_id="mch_1", user_id="usr_1")


@pytest.mark.parametrize(
    ("principal", "method", "path", "refused"),
    [
        (MERCHANT, "POST", "/v1/payments", True),
        (MERCHANT, "POST", "/v1/checkout/sessions", True),
        (MERCHANT, "POST", "/v1/payment-links", True),
        (MERCHANT, "PATCH", "/v1/webhook-endpoints/we_1", True),
        (MERCHANT, "GET", "/v1/payments", False),
        (MERCHANT, "HEAD", "/v1/payments/pay_1", False),
        (MERCHANT, "POST", "/v1/payments/pay_1/refunds", False),
        (MERCHANT, "POST", "/v1/payments/pay_1/close", False),
        (MERCHANT, "POST", "/v1/checkout/sessions/cs_1/expire", False),
        (MERCHANT, "POST", "/v1/payment-links/pl_1/deactivate", False),
        (MERCHANT, "POST", "/v1/payments/pay_1/refunds/extra", True),
        (USER_OF_MERCHANT, "POST", "/v1/checkout/wallet-payments/tok", True),
        (PLATFORM_FOR_MERCHANT, "POST", "/v1/payments", False),  # the platform that suspended it may act
    ],
)
def test_what_a_suspension_refuses(principal: Principal, method: str, path: str, refused: bool) -> None:
    assert (suspendable_merchant(principal, method, path) == "mch_1") is refused


ADMIN = Principal("platform", "key_admin", "plt_1")
OPERATOR_RISK = Principal(
    "platform",
    "cst_1",
    "plt_1",
    staff_id="stf_1",
    permissions=frozenset({"platform.merchants.read", "platform.kyc.review"}),
)
MERCHANT_STAFF = Principal(
    "merchant", "cst_2", "plt_1", merchant_id="mch_1", staff_id="stf_2", permissions=frozenset({"payments.read"})
)


@pytest.mark.parametrize(
    ("principal", "permission", "refusal"),
    [
        (ADMIN, rules.SUSPEND_PERMISSION, None),
        (OPERATOR_RISK, rules.READ_PERMISSION, None),
        (OPERATOR_RISK, rules.RETRY_PERMISSION, None),
        (OPERATOR_RISK, rules.SUSPEND_PERMISSION, "console_permission_denied"),
        (MERCHANT_STAFF, rules.READ_PERMISSION, "route_forbidden"),
        (MERCHANT, rules.READ_PERMISSION, "route_forbidden"),
    ],
)
def test_operators_need_the_permission_the_admin_key_needs_none(
    principal: Principal, permission: str, refusal: str | None
) -> None:
    if refusal is None:
        rules.require_operator(principal, permission)
    else:
        with pytest.raises(Problem) as refused:
            rules.require_operator(principal, permission)
        assert refused.value.spec.code == refusal
    assert rules.actor_of(principal).startswith("staff:" if principal.staff_id else "platform:")


def test_production_refuses_the_demo_identity_secret() -> None:
    """Onboarding's KYC verdicts are signed with the identity provider's shared secret: the demo one is public."""
    prod = functools.partial(
        Settings,
        env="prod",
        credentials_encryption_key=SecretStr("cmVhbC1jcmVkZW50aWFscy1rZXktMzItYnl0ZXMtMDA="),
        web_client_token=SecretStr("a-real-web-client-token-0123456789abcdef"),
        internal_token_secret=SecretStr("a-real-internal-token-secret-0123456789abcdef"),
    )
    with pytest.raises(ValidationError, match="demo identity_secret"):
        prod()
    assert prod(identity_secret=SecretStr("a-real-provider-secret")).env == "prod"
    assert Settings(env="dev").identity_secret.get_secret_value() == DEMO_IDENTITY_SECRET  # the sandbox's, in dev


def _opening(channel: str = "alipay", **changes: object) -> dict[str, object]:
    return {"channel": channel, "route_id": "r1", "sub_merchant_id": "2088", "config": {"app_id": "1"}, **changes}


def _request(*openings: dict[str, object], key_mode: str = "test") -> dict[str, object]:
    return {
        "legal_name": "张三",
        "entity_type": "individual",
        "industry_code": "5812",
        "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
        "contact": {"name": "张三", "email": "a@b.example", "phone": "13800138000"},
        "settlement_account": {"account_name": "张三", "account_number": "62220212345678", "bank_name": "ICBC"},
        "channels": list(openings),
        "key_mode": key_mode,
    }


def test_a_channel_opens_once_per_mode_with_either_its_own_config_or_a_partner_part() -> None:
    """Test and live side by side: the same channel twice is fine in two modes (the default mode is key_mode), never
    twice in one; each opening gives its own credentials or, in partner mode, only the merchant's part."""
    both = OnboardingCreateRequest.model_validate(_request(_opening(), _opening(mode="live")))
    assert [(c.channel, c.mode) for c in both.channels] == [("alipay", None), ("alipay", "live")]
    partner = _opening("wechatpay", config=None, partner={"sub_mchid": "1900000111"})
    assert OnboardingCreateRequest.model_validate(_request(partner)).channels[0].partner == {"sub_mchid": "1900000111"}
    refused = (
        [_opening(), _opening(mode="test")],  # twice in one mode
        [_opening("wechatpay", partner={"sub_mchid": "1"})],  # config and partner
        [_opening("wechatpay", config=None)],  # neither
        [_opening("wechatpay", config=None, partner={"sub_mchid": "1", "sp_mchid": "2"})],  # the provider's field
        [_opening("alipay", config=None, partner={"sub_mchid": "1"})],  # Alipay's part is app_auth_token
        [_opening("unionpay", config=None, partner={"sub_mchid": "1"})],  # no partner mode
    )
    for openings in refused:
        with pytest.raises(ValidationError):
            OnboardingCreateRequest.model_validate(_request(*openings))


def test_a_partner_template_names_the_provider_only_and_shows_no_secret() -> None:
    wechat = {
        "sp_mchid": "1900000100",
        "sp_appid": "wx8",
        "apiv3_key": "k" * 32,
        "merchant_private_key_pem": "P",
        "platform_public_key_pem": "pub",
        "base_url": "https://api.mch.weixin.qq.com",
    }
    assert template_problems("wechatpay", wechat) == []
    assert template_problems("wechatpay", {**wechat, "sub_mchid": "1"}) != []
    assert template_problems("wechatpay", {k: v for k, v in wechat.items() if k != "sp_appid"}) != []
    assert template_problems("alipay", {"app_id": "2021", "app_auth_token": "t"}) != []
    shown, secret = public_part({**wechat, "app_secret": "s", "sign_pfx_password": "p"})
    assert secret == ["apiv3_key", "app_secret", "merchant_private_key_pem", "sign_pfx_password"]
    assert set(shown) == {"sp_mchid", "sp_appid", "platform_public_key_pem", "base_url"}
