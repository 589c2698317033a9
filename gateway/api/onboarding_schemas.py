"""Request and response schemas of merchant onboarding and suspension (docs/onboarding.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.schemas import ID_PATTERN
from gateway.domain.onboarding import LICENSED_ENTITY_TYPES
from gateway.flows.onboarding_partner import partner_problems

# Unified social credit code (GB 32100): 18 characters of this alphabet; the check character is the identity
# provider's business (a wrong one is a rejected KYC step with its reason, not a malformed request).
USCC_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{18}$"
RESIDENT_ID_PATTERN = r"^[0-9]{17}[0-9X]$"
CHANNELS_MAX = 8


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Representative(_Strict):
    name: str = Field(min_length=1, max_length=100)
    id_number: str = Field(pattern=RESIDENT_ID_PATTERN, description="Resident ID number (GB 11643)")


class Contact(_Strict):
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$", max_length=254)
    phone: str = Field(pattern=r"^\+?[0-9]{6,20}$")


class SettlementAccount(_Strict):
    account_name: str = Field(min_length=1, max_length=100, description="The holder's name as the bank has it")
    account_number: str = Field(pattern=r"^[0-9]{8,32}$")
    bank_name: str = Field(min_length=1, max_length=100)


class ChannelOpening(_Strict):
    """One channel: the cashier configuration — the merchant's own credentials (`config`), or in partner mode only
    the merchant's part (`partner`), put over the platform's stored service-provider template — and the routing
    contract on `route_id`."""

    channel: Literal["wechatpay", "alipay", "unionpay", "ecny"]
    route_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    sub_merchant_id: str = Field(min_length=1, max_length=64, description="The merchant's id at the channel")
    priority: int = Field(default=1, ge=1, le=100)
    config: dict[str, Any] | None = Field(
        default=None, description="The cashier's channel configuration (docs/protocols); or `partner`"
    )
    partner: dict[str, str] | None = Field(
        default=None,
        description="Partner mode: the merchant's part only — WeChat Pay `sub_mchid` (+ `sub_appid`), Alipay "
        "`app_auth_token` (+ `seller_id`); the rest is the platform's template (PUT "
        "/v1/platform/partner-templates/{channel}/{mode})",
    )
    mode: Literal["test", "live"] | None = Field(
        default=None,
        description="The configuration's mode (default: `key_mode`): a channel may be opened twice, a test "
        "configuration at the sandbox and a live one at the real channel, side by side (docs/test-mode.md)",
    )


class Cycle(_Strict):
    kind: Literal["t_plus", "d_plus", "weekly"] = "t_plus"
    days: int = Field(default=1, ge=0, le=30)


class SettlementDefaults(_Strict):
    cycle: Cycle = Field(default_factory=Cycle)
    platform_fee_rate_bps: int = Field(default=0, ge=0, le=10_000)
    split_rule: dict[str, Any] | None = Field(default=None, description="Settlement's split rule, as its API takes it")


class OnboardingCreateRequest(_Strict):
    merchant_id: str | None = Field(default=None, pattern=ID_PATTERN, examples=["mch_tea_house"])
    legal_name: str = Field(min_length=1, max_length=100, description="As on the business licence (or ID card)")
    display_name: str | None = Field(default=None, min_length=1, max_length=200, description="What payers see")
    entity_type: Literal["individual", "individual_business", "company"]
    industry_code: str = Field(pattern=r"^[0-9]{4}$", description="ISO 18245 merchant category code (MCC)")
    business_licence_number: str | None = Field(default=None, pattern=USCC_PATTERN)
    legal_representative: Representative
    contact: Contact
    settlement_account: SettlementAccount
    channels: list[ChannelOpening] = Field(min_length=1, max_length=CHANNELS_MAX)
    settlement: SettlementDefaults = Field(default_factory=SettlementDefaults)
    webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]{1,490}$",
        max_length=500,
        description="Where the cashier delivers the merchant's events; none: webhook endpoints registered later",
    )
    rsa_public_key_pem: str | None = Field(default=None, max_length=8192, description="Enables JUHE-RSA-SHA256")
    key_mode: Literal["test", "live"] = Field(default="test", description="The API key's mode (docs/test-mode.md)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.entity_type in LICENSED_ENTITY_TYPES and self.business_licence_number is None:
            raise ValueError(f"a {self.entity_type} needs its business_licence_number")
        if self.entity_type == "individual" and self.business_licence_number is not None:
            raise ValueError("an individual has no business licence: leave business_licence_number out")
        channels = [(c.channel, c.mode or self.key_mode) for c in self.channels]
        if len(set(channels)) != len(channels):
            raise ValueError("each channel once per mode")
        for opening in self.channels:
            if (opening.config is None) == (opening.partner is None):
                raise ValueError(f"{opening.channel}: give either config (own credentials) or partner (partner mode)")
            if opening.partner is not None and (problems := partner_problems(opening.channel, opening.partner)):
                raise ValueError(f"{opening.channel}: " + "; ".join(problems))
        return self


class StepView(BaseModel):
    status: Literal["pending", "verified", "active", "rejected"]
    reasons: list[dict[str, Any]]
    attempts: int
    last_error: dict[str, Any] | None = Field(default=None, description="Why a pending step waits (retried later)")
    previous_reasons: list[dict[str, Any]] | None = Field(default=None, description="Before the last retry")
    detail: dict[str, Any] | None = None


class OnboardingApiKey(BaseModel):
    key_id: str
    secret: str


class OnboardingResponse(BaseModel):
    onboarding_id: str
    merchant_id: str
    status: Literal["processing", "active", "rejected"]
    steps: dict[str, StepView]
    created_at: datetime
    updated_at: datetime
    # Only in the answers to the creating request (and its idempotent repeats): the merchant's credentials.
    api_key: OnboardingApiKey | None = None
    webhook_secret: str | None = None


class SuspensionRequest(_Strict):
    reason: str = Field(min_length=1, max_length=500)


class MerchantStatusResponse(BaseModel):
    merchant_id: str
    name: str
    status: str = Field(description="active, or disabled while its onboarding is not complete")
    suspended: bool
    suspended_at: datetime | None
    suspension_reason: str | None


class PartnerTemplateRequest(_Strict):
    config: dict[str, Any] = Field(
        min_length=1,
        description="The service provider's cashier configuration: WeChat Pay `sp_mchid`, `sp_appid`, its keys and "
        "`base_url`; Alipay the ISV app's `app_id`, keys and `gateway_url` (docs/protocols) — no merchant's ids",
    )


class PartnerTemplateResponse(BaseModel):
    channel: Literal["wechatpay", "alipay"]
    mode: Literal["test", "live"]
    version: int = Field(description="Bumped when the configuration changes; the same one stored again keeps it")
    config: dict[str, Any] = Field(description="The public part: ids, URLs, public keys (never a secret)")
    secret_fields: list[str] = Field(description="The fields stored sealed and never shown")
    created_at: datetime
    updated_at: datetime
