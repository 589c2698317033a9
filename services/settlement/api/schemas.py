"""Request and response schemas of the settlement API (pydantic)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from libs.common.paging import ListPage

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
BANK_ACCOUNT_NO_MAX = 34


class ChannelAccountSchema(BaseModel):
    """The receiver's own identifiers at a channel (docs/contracts.md §2), passed to the channel as they are:
    WeChat Pay `type` MERCHANT_ID | PERSONAL_OPENID; Alipay userId | loginName."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=32)
    account: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=128)


class ReceiverUpsertRequest(BaseModel):
    kind: Literal["merchant", "platform", "partner"]
    holder_id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=128)
    channel_accounts: dict[Literal["wechatpay", "alipay"], ChannelAccountSchema] | None = None


class ReceiverResponse(BaseModel):
    receiver_id: str
    kind: str
    holder_id: str
    name: str
    channel_accounts: dict[str, ChannelAccountSchema] | None = None


class ShareSchema(BaseModel):
    receiver_id: str = Field(pattern=ID_PATTERN)
    percent_bps: StrictInt | None = None
    fixed_minor: StrictInt | None = None


class SplitRuleUpsertRequest(BaseModel):
    business_line: str = Field(default="", max_length=64)
    shares: list[ShareSchema] = Field(max_length=50)
    remainder_receiver_id: str = Field(pattern=ID_PATTERN)
    mode: Literal["realtime", "escrow"] = "realtime"
    auto_confirm_seconds: StrictInt | None = Field(default=None, ge=0, le=90 * 86_400, description="escrow only")


class SplitRuleResponse(BaseModel):
    rule_id: str
    merchant_id: str
    business_line: str
    shares: list[ShareSchema]
    remainder_receiver_id: str
    version: int
    mode: str
    auto_confirm_seconds: int | None


class FeeRateUpsertRequest(BaseModel):
    platform_fee_rate_bps: StrictInt = Field(ge=0, le=10_000)


class FeeRateResponse(BaseModel):
    merchant_id: str
    platform_fee_rate_bps: int


class SplitResponse(BaseModel):
    split_id: str
    kind: str
    mode: str
    confirm_deadline: datetime | None
    confirmed_by: str | None
    payment_id: str
    refund_id: str | None
    base_minor: int
    currency: str
    allocations: dict[str, int]
    status: str
    ledger_transfer_id: str | None
    last_error: str | None


class ProfitSharingOrderResponse(BaseModel):
    order_no: str
    payment_id: str
    split_id: str
    channel: str
    status: str
    channel_status: str | None
    channel_order_id: str | None
    receivers: list[dict[str, Any]]
    result: dict[str, Any] | None
    ledger_transfer_id: str | None
    last_error: str | None


class PaymentRecordResponse(BaseModel):
    payment_id: str
    merchant_id: str
    merchant_order_no: str | None
    channel: str | None
    status: str
    amount_minor: int
    currency: str
    refunded_minor: int
    channel_fee_minor: int | None
    channel_fee_rate_bps: int | None
    platform_fee_rate_bps: int | None
    platform_fee_minor: int | None
    margin_minor: int | None
    purpose: str
    explicit_split: list[dict[str, Any]] | None
    profit_sharing: bool
    splits: list[SplitResponse]
    profit_sharing_orders: list[ProfitSharingOrderResponse] = []


class ReconciliationRunRequest(BaseModel):
    # Every channel whose bill the cashier parses (its connector's download_bill): WeChat Pay's and Alipay's
    # daily bills, UnionPay's ZM settlement file, the e-CNY bank's daily CSV.
    channel: Literal["wechatpay", "alipay", "unionpay", "ecny"]
    merchant_id: str = Field(min_length=1, max_length=64)
    bill_date: date
    livemode: bool | None = Field(
        default=None,
        description="Which mode to reconcile (docs/test-mode.md): the bill of the merchant's configuration of that "
        "mode (a sandbox's for test) against that mode's records only; default: the key's mode, else the mode of "
        "the merchant's configuration of the channel",
    )


class ReconciliationRunResponse(BaseModel):
    run_id: str
    channel: str
    merchant_id: str
    bill_date: date
    status: str
    bill_lines: int
    counts: dict[str, int]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    livemode: bool = True


class ReconciliationItemResponse(BaseModel):
    item_id: int
    run_id: str
    outcome: str
    resolution: str
    resolution_status: str
    kind: str
    key: str
    payment_id: str | None
    refund_id: str | None
    merchant_order_no: str | None
    channel_trade_no: str | None
    juhe_amount_minor: int | None
    channel_amount_minor: int | None
    juhe_fee_minor: int | None
    channel_fee_minor: int | None
    juhe_status: str | None
    channel_status: str | None
    detail: str


class ReconciliationItemListResponse(ListPage[ReconciliationItemResponse]):
    pass


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row)


class CycleUpsertRequest(BaseModel):
    kind: Literal["t_plus", "d_plus", "weekly"]
    days: StrictInt = Field(default=1, ge=0, le=30)
    weekday: StrictInt = Field(default=0, ge=0, le=6, description="weekly: 0 = Monday")
    cutoff: str = Field(default="23:59:59", pattern=r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$", description="China time")


class CycleResponse(BaseModel):
    holder_id: str
    kind: str
    days: int
    weekday: int
    cutoff: str


class CalendarDayRequest(BaseModel):
    business_day: bool
    name: str = Field(default="", max_length=64)


class CalendarDayResponse(BaseModel):
    day: date
    business_day: bool
    name: str


class CalendarResponse(ListPage[CalendarDayResponse]):
    """One year's marked days: at most a year of days, so always one page."""


class CalendarScheduleDay(BaseModel):
    day: date
    business_day: bool
    name: str = Field(description="The holiday's or make-up workday's name, when the calendar marks the day")
    settle_date: date = Field(description="When a payment traded this day (before the cutoff) is settled")


class CalendarScheduleResponse(BaseModel):
    """A month of the business-day calendar with each day's settle date under one cycle (not a list: one month)."""

    month: str
    holder_id: str | None
    cycle: CycleResponse
    days: list[CalendarScheduleDay]


class SettlementRunRequest(BaseModel):
    cycle_date: date


class SettlementRunResponse(BaseModel):
    cycle_date: date
    batches_built: int
    batches_posted: int
    batches_failed: int


class BatchResponse(BaseModel):
    batch_id: str
    holder_id: str
    currency: str
    cycle_date: date
    amount_minor: int
    entry_count: int
    status: str
    ledger_transfer_id: str | None
    created_at: datetime | None = None
    posted_at: datetime | None = None
    livemode: bool = True


class BatchListResponse(ListPage[BatchResponse]):
    pass


def batch_page(rows: Any, limit: int) -> BatchListResponse:
    """A page of batches from rows read with `limit + 1`, newest first (batch ids are time-ordered)."""
    return BatchListResponse.of(
        rows,
        limit,
        item=lambda r: BatchResponse(**{k: r[k] for k in BatchResponse.model_fields}),
        cursor_of=lambda b: b.batch_id,
    )


class StatementResponse(BaseModel):
    merchant_id: str
    balances: dict[str, dict[str, int]]  # currency -> settled_minor, settling_minor, pending_minor
    batches: list[BatchResponse]


class PayoutCreateRequest(BaseModel):
    amount_minor: StrictInt = Field(gt=0, le=2**63 - 1)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    account_no: str = Field(
        min_length=4,
        max_length=64,
        pattern=r"^[0-9A-Za-z_\-]+$",
        description="bank: the account number; wechat_change: the payee's openid; "
        "alipay_account: the payee's Alipay user id (2088…)",
    )
    account_name: str = Field(min_length=1, max_length=128, description="The payee's real name")
    idempotency_key: str = Field(min_length=1, max_length=128)
    rail: Literal["bank", "wechat_change", "alipay_account"] = Field(
        default="bank",
        description="Where the money goes: a bank account, WeChat change (the payee confirms "
        "receipt in WeChat) or an Alipay account",
    )

    @model_validator(mode="after")
    def _bank_account_no(self) -> PayoutCreateRequest:
        if self.rail == "bank" and (len(self.account_no) > BANK_ACCOUNT_NO_MAX or not self.account_no.isalnum()):
            raise ValueError(f"a bank account_no is 4-{BANK_ACCOUNT_NO_MAX} letters and digits")
        return self


class PayoutResponse(BaseModel):
    payout_id: str
    holder_id: str
    amount_minor: int
    currency: str
    account_no: str
    account_name: str
    status: str
    failure_code: str | None
    bank_ref: str | None
    bank_status: str | None
    rail: str
    user_action: dict[str, Any] | None = Field(description="wechat_change: the package_info the payee confirms")
    instruction_transfer_id: str | None
    outcome_transfer_id: str | None
    created_at: datetime
    finished_at: datetime | None
    decided_by: str | None = Field(description="The operator who approved or rejected a held payout")
    decided_at: datetime | None
    decision_reason: str | None
    livemode: bool = Field(description="Test payouts (false) are simulated, never sent to a bank or channel")


class PayoutDecisionRequest(BaseModel):
    """An operator's decision on a held payout: who (recorded on the payout) and why (required to reject)."""

    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=200, pattern=r"\S")
    reason: str | None = Field(default=None, min_length=1, max_length=1000, pattern=r"\S")


class PayoutListResponse(ListPage[PayoutResponse]):
    pass


class SplitCheckEntry(BaseModel):
    receiver_id: str = Field(pattern=ID_PATTERN)
    amount_minor: StrictInt = Field(gt=0, le=2**63 - 1)


class SplitCheckRequest(BaseModel):
    """The split check (docs/contracts.md §1): the cashier asks before it creates a payment that carries an
    explicit split."""

    merchant_id: str = Field(min_length=1, max_length=64)
    amount_minor: StrictInt = Field(gt=0, le=2**63 - 1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    split: list[SplitCheckEntry] = Field(min_length=1, max_length=20)
    business_line: str = Field(default="", max_length=64)


class SplitCheckResponse(BaseModel):
    ok: bool


class WithdrawalResponse(BaseModel):
    operation_id: str
    holder_id: str
    amount_minor: int
    fee_minor: int
    currency: str
    status: str
    bank_ref: str | None
    bank_status: str | None
    rail: str
    user_action: dict[str, Any] | None = Field(description="wechat_change: the package_info the user confirms")
    failure_code: str | None
    ledger_outcome: str | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class WithdrawalListResponse(ListPage[WithdrawalResponse]):
    pass


class ConsistencyItem(BaseModel):
    """One holder/currency where settlement's unsettled net and the ledger's merchant_pending differ."""

    merchant_id: str
    currency: str
    settlement_minor: int
    ledger_minor: int
    difference_minor: int  # settlement_minor − ledger_minor


class ConsistencyResponse(BaseModel):
    """The latest settlement ↔ ledger check (`ok` null: never run yet). `mismatches` differed by the same
    amount in two readings (confirmed); `unconfirmed` differed only in the last one (events in flight)."""

    ok: bool | None
    checked_at: datetime | None
    holders_checked: int
    mismatches: list[ConsistencyItem]
    unconfirmed: list[ConsistencyItem]
