"""Request and response schemas of the marketing API (pydantic). Amounts are integer minor units."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from libs.common.money import AmountMinor, Currency
from libs.common.paging import ListPage

Name = Annotated[str, Field(min_length=1, max_length=128)]
Ref = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-:.]+$")]
RefList = Annotated[list[Ref], Field(max_length=100)]
Bps = Annotated[StrictInt, Field(ge=0, le=10_000)]
Count = Annotated[StrictInt, Field(ge=1, le=100_000_000)]
# A coupon's code: 16 digits when Juhe issued it; a migrated coupon keeps its platform's code (4–64 characters).
CouponCode = Annotated[str, Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignCreateRequest(Strict):
    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""


class CampaignResponse(BaseModel):
    campaign_id: str
    owner_merchant_id: str | None
    name: str
    description: str
    created_at: datetime


class CampaignListResponse(ListPage[CampaignResponse]):
    """Campaigns newest first (libs.common.paging: the one list shape)."""


class StockCreateRequest(Strict):
    campaign_id: Ref
    name: Name
    discount_kind: Literal["fixed", "percent"]
    currency: Currency = "CNY"
    amount_off_minor: AmountMinor | None = None
    percent_off_bps: Bps | None = None
    discount_cap_minor: AmountMinor | None = None
    threshold_minor: Annotated[StrictInt, Field(ge=0, le=10**15)] = 0
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    valid_days_after_claim: Annotated[StrictInt, Field(ge=1, le=3650)] | None = None
    merchant_ids: RefList = []
    store_ids: RefList = []
    scenes: RefList = []
    payment_methods: RefList = []
    funding_party: Literal["platform", "merchant", "shared"]
    platform_share_bps: Bps | None = None
    refund_policy: Literal["return_on_full_refund", "never_return"] = "return_on_full_refund"
    budget_count: Count
    budget_minor: AmountMinor | None = None
    per_user_limit: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    per_user_daily_limit: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    daily_count_limit: Count | None = None
    points_price: Annotated[StrictInt, Field(ge=1, le=10**12)] | None = None  # users may exchange this many points
    # Mirrored at a channel (flows/channel_stocks.py): created there when it starts, its coupons sent there.
    channel: Literal["wechatpay_favor", "alipay_voucher"] | None = None


class StockBudgetRequest(Strict):
    """The new totals (not increments), so a repeated request changes nothing more."""

    budget_count: Count
    budget_minor: AmountMinor


class StockResponse(BaseModel):
    stock_id: str
    campaign_id: str
    owner_merchant_id: str | None
    name: str
    status: str
    discount_kind: str
    currency: str
    amount_off_minor: int | None
    percent_off_bps: int | None
    discount_cap_minor: int | None
    threshold_minor: int
    face_value_minor: int
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days_after_claim: int | None
    merchant_ids: list[str]
    store_ids: list[str]
    scenes: list[str]
    payment_methods: list[str]
    funding_party: str
    platform_share_bps: int
    refund_policy: str
    budget_count: int
    budget_minor: int
    remaining_count: int
    remaining_budget_minor: int
    per_user_limit: int
    per_user_daily_limit: int | None
    daily_count_limit: int | None
    points_price: int | None
    channel: str | None = None
    created_at: datetime
    updated_at: datetime


class StockListResponse(ListPage[StockResponse]):
    """Stocks newest first (libs.common.paging: the one list shape)."""


class ClaimCreateRequest(Strict):
    stock_id: Ref
    request_id: Ref
    # A channel stock's coupon goes to the user at the channel: the openid (under the merchant's WeChat appid) or
    # the Alipay user id (2088…). Required for a channel stock, ignored otherwise.
    channel_user: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")] | None = None


class CouponResponse(BaseModel):
    coupon_id: str
    stock_id: str
    campaign_id: str
    user_id: str
    source: str
    status: str
    code: str
    qr_payload: str
    face_value_minor: int
    currency: str
    valid_from: datetime
    valid_until: datetime
    claimed_at: datetime
    # A channel stock's coupon: {program, channel_user, send_status: pending|sent|refused, channel_coupon_id,
    # failure_code, used_at, transaction_id}; null for Juhe's own coupons.
    channel: dict[str, Any] | None = None


class CouponListResponse(ListPage[CouponResponse]):
    """A user's coupons newest first (libs.common.paging: the one list shape)."""


class BulkIssueCreateRequest(Strict):
    request_id: Ref
    user_ids: Annotated[list[Ref], Field(min_length=1)]


class BulkIssueResponse(BaseModel):
    bulk_issue_id: str
    stock_id: str
    request_id: str
    total_count: int
    pending_count: int
    issued_count: int
    failed_count: int
    done: bool
    created_at: datetime


class LockCreateRequest(Strict):
    payment_id: Ref
    coupon_id: Ref | None = None  # exactly one of coupon_id and coupon_code (the user's 16-digit code)
    coupon_code: CouponCode | None = None
    user_id: Ref
    merchant_id: Ref
    store_id: Ref | None = None
    scene: Ref | None = None
    payment_method: Ref | None = None
    order_amount_minor: AmountMinor
    currency: Currency = "CNY"
    lock_seconds: Annotated[StrictInt, Field(ge=10, le=86_400)] | None = None


class ApplicableCouponResponse(BaseModel):
    coupon_id: str
    stock_id: str
    discount_minor: int
    payable_minor: int
    valid_until: datetime


class ApplicableCouponListResponse(ListPage[ApplicableCouponResponse]):
    """The best `limit` offers, best first: one page only (no cursor: `has_more` says some were left out)."""


class ReleaseRequest(Strict):
    reason: Literal["payment_failed", "payment_closed", "cancelled"] = "payment_failed"


class RefundCreateRequest(Strict):
    refund_id: Ref
    refund_amount_minor: AmountMinor


class FundingResponse(BaseModel):
    party: str
    platform_share_bps: int
    platform_minor: int
    merchant_minor: int


class RedemptionResponse(BaseModel):
    redemption_id: str
    kind: str
    status: str
    coupon_id: str
    stock_id: str
    campaign_id: str
    user_id: str
    merchant_id: str
    store_id: str | None
    payment_id: str | None
    currency: str
    order_amount_minor: int
    discount_minor: int
    payable_minor: int
    funding: FundingResponse
    refunded_minor: int
    reversed_platform_minor: int
    reversed_merchant_minor: int
    locked_until: datetime | None
    used_at: datetime | None
    release_reason: str | None


class RefundResponse(BaseModel):
    refund_id: str
    redemption_id: str
    refund_amount_minor: int
    reversed_platform_minor: int
    reversed_merchant_minor: int
    coupon_returned: bool
    redemption: RedemptionResponse


class InStoreRedeemRequest(Strict):
    request_id: Ref
    code: CouponCode | None = None
    qr_payload: Annotated[str, Field(max_length=64)] | None = None
    store_id: Ref | None = None
    payment_method: Ref | None = None
    order_amount_minor: AmountMinor
    currency: Currency = "CNY"


class InStoreVerifyResponse(BaseModel):
    coupon_id: str
    stock_id: str
    discount_minor: int
    payable_minor: int
    funding: FundingResponse
    valid_until: datetime


class StatsResponse(BaseModel):
    campaign_id: str
    issued_count: int
    claimed_count: int
    bulk_issued_count: int
    redeemed_count: int
    cost: dict[str, int]
    paid_volume_minor: int


class PointsRuleCreateRequest(Strict):
    name: Name
    merchant_id: Ref | None = None
    currency: Currency = "CNY"
    unit_minor: Annotated[StrictInt, Field(ge=1, le=10**12)] = 100
    points_per_unit: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 1
    payment_points_max: Annotated[StrictInt, Field(ge=1, le=10**12)] | None = None
    user_daily_points_max: Annotated[StrictInt, Field(ge=1, le=10**12)] | None = None
    expiry_days: Annotated[StrictInt, Field(ge=1, le=3650)] | None = None  # earnings expire; None: never


class PointsRuleResponse(BaseModel):
    rule_id: str
    owner_merchant_id: str | None
    merchant_id: str | None
    name: str
    status: str
    currency: str
    unit_minor: int
    points_per_unit: int
    payment_points_max: int | None
    user_daily_points_max: int | None
    expiry_days: int | None
    created_at: datetime


class PointsRuleListResponse(ListPage[PointsRuleResponse]):
    """Points rules newest first (libs.common.paging: the one list shape)."""


class PointsEarningResponse(BaseModel):
    payment_id: str
    rule_id: str
    merchant_id: str
    currency: str
    amount_minor: int
    points: int
    reversed_points: int
    consumed_points: int
    expired_points: int
    remaining_points: int
    expires_at: datetime | None
    created_at: datetime


class PointsEarningListResponse(ListPage[PointsEarningResponse]):
    """A user's points earnings by payment, newest first (libs.common.paging: the one list shape)."""


class PointsExchangeRequest(Strict):
    stock_id: Ref
    request_id: Ref


class PointsExchangeResponse(BaseModel):
    exchange_id: str
    stock_id: str
    points: int
    coupon: CouponResponse
    created_at: datetime


def redemption_response(row: Any) -> RedemptionResponse:
    body = {k: row[k] for k in RedemptionResponse.model_fields if k != "funding"}
    body["funding"] = FundingResponse(
        party=row["funding_party"],
        platform_share_bps=row["platform_share_bps"],
        platform_minor=row["platform_minor"],
        merchant_minor=row["merchant_minor"],
    )
    return RedemptionResponse.model_validate(body)


class TopupTier(Strict):
    min_topup_minor: Annotated[StrictInt, Field(ge=1, le=10**12)]
    bonus_minor: Annotated[StrictInt, Field(ge=1, le=10**12)]


class TopupPromotionCreateRequest(Strict):
    """ "Top up 100, get 10": tiers ascending (the highest tier reached gives its bonus), platform-funded."""

    name: Name
    currency: Currency = "CNY"
    tiers: Annotated[list[TopupTier], Field(min_length=1, max_length=10)]
    budget_minor: Annotated[StrictInt, Field(ge=1, le=10**13)]
    per_holder_limit: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    bonus_valid_days: Annotated[StrictInt, Field(ge=1, le=3650)] | None = None  # None: the bonus never expires
    valid_from: datetime | None = None
    valid_until: datetime | None = None


class TopupPromotionResponse(BaseModel):
    promotion_id: str
    name: str
    status: str
    currency: str
    tiers: list[TopupTier]
    budget_minor: int
    remaining_budget_minor: int
    granted_count: int
    per_holder_limit: int
    bonus_valid_days: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    created_at: datetime


class TopupPromotionListResponse(ListPage[TopupPromotionResponse]):
    """Top-up promotions newest first (libs.common.paging: the one list shape)."""


class TopupBonusGrantResponse(BaseModel):
    payment_id: str
    holder_id: str
    promotion_id: str | None
    status: str  # granted | not_granted | revoked | expired
    currency: str
    topup_minor: int
    bonus_minor: int
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class TopupBonusGrantListResponse(ListPage[TopupBonusGrantResponse]):
    """A user's top-up bonuses by payment, newest first (libs.common.paging: the one list shape)."""


# --- imports of a platform's existing coupons (services/migration) --------------------------------------
class ImportedCoupon(Strict):
    source_id: Ref
    user_id: Ref
    code: CouponCode
    face_value_minor: AmountMinor
    currency: Currency = "CNY"
    threshold_minor: Annotated[StrictInt, Field(ge=0, le=10**15)] = 0
    valid_from: datetime
    valid_until: datetime
    merchant_ids: RefList = []
    store_ids: RefList = []
    scenes: RefList = []
    payment_methods: RefList = []


class CouponImportRequest(Strict):
    run_id: Ref
    coupons: Annotated[list[ImportedCoupon], Field(min_length=1, max_length=1000)]


class CouponImportResult(BaseModel):
    source_id: str
    status: Literal["created", "duplicate", "rejected"]
    coupon_id: str | None = None
    reason: str | None = None
    detail: str | None = None


class CouponImportResponse(BaseModel):
    run_id: str
    results: list[CouponImportResult]


class CouponVoidRequest(Strict):
    run_id: Ref
    limit: Annotated[StrictInt, Field(ge=1, le=100_000)] = 10_000


class CouponVoidResponse(BaseModel):
    run_id: str
    voided_count: int  # by this call
    voided_total: int  # of the run, so far
    used_count: int  # used or locked: cannot be voided
    used_face_value_minor: dict[str, int]
    remaining_count: int  # still available (more calls needed when over `limit`)
