"""Request and response schemas of the wallet API (strict: unknown fields and wrong types are 422)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from libs.common.money import AmountMinor, AmountMinorOrZero, Currency
from libs.common.paging import ListPage
from services.ledger.wallet.domain.entitlements import Action, HolderType, SubaccountType
from services.ledger.wallet.domain.payout import Rail

Key = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
HolderId = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HolderOpenRequest(Strict):
    holder_id: str = HolderId
    holder_type: HolderType
    name: str = Field(min_length=1, max_length=100)
    currency: Currency = "CNY"
    # person
    resident_id: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, max_length=20)
    bank_card: str | None = Field(default=None, max_length=32)
    # merchant
    credit_code: str | None = Field(default=None, max_length=32)
    legal_person: str | None = Field(default=None, max_length=100)
    settlement_account: str | None = Field(default=None, max_length=40)


class HolderResponse(BaseModel):
    holder_id: str
    holder_type: str
    name: str
    document_number_masked: str
    phone_masked: str | None
    bank_card_masked: str | None
    legal_person: str | None
    kyc_status: str
    kyc_reason: str | None
    kyc_level: int
    created_at: datetime


class KycCallbackRequest(Strict):
    request_id: str = Field(min_length=1, max_length=64)
    result: Literal["approved", "rejected"]
    reason: str | None = Field(default=None, max_length=200)


class EntitlementSchema(BaseModel):
    allowed: bool
    single_limit_minor: int | None
    daily_limit_minor: int | None
    monthly_limit_minor: int | None


class EntitlementChangeRequest(Strict):
    holder_type: HolderType
    kyc_level: StrictInt = Field(ge=0, le=2)
    subaccount_type: SubaccountType
    action: Action
    allowed: StrictBool | None = None
    single_limit_minor: AmountMinor | None = None
    daily_limit_minor: AmountMinor | None = None
    monthly_limit_minor: AmountMinor | None = None
    clear_limits: list[Literal["single_limit_minor", "daily_limit_minor", "monthly_limit_minor"]] = Field(
        default_factory=list, max_length=3
    )
    actor: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=200)


class EntitlementChangeResponse(BaseModel):
    before: EntitlementSchema
    after: EntitlementSchema


class TopUpRequest(Strict):
    payment_id: str = Key
    amount_minor: AmountMinor
    currency: Currency = "CNY"
    channel: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    channel_fee_minor: AmountMinorOrZero = 0
    subaccount_type: Literal["balance", "prepaid"] = "balance"
    merchant_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")


class WithdrawalPayee(Strict):
    """Who a channel-rail withdrawal pays (services/ledger/wallet/domain/payout.py checks the fields against the
    rail, with stable codes): `wechat_change` takes `openid` (+ `user_name`), `alipay_account` takes `identity`
    (+ `identity_type`, `name`). A name, when given, must be the holder's verified name; it is sent anyway."""

    openid: str | None = Field(default=None, max_length=128, description="wechat_change: the holder's openid")
    user_name: str | None = Field(default=None, max_length=64, description="wechat_change: the holder's name")
    identity: str | None = Field(default=None, max_length=64, description="alipay_account: Alipay user id, 2088…")
    identity_type: str | None = Field(default=None, max_length=32, description="alipay_account: ALIPAY_USER_ID")
    name: str | None = Field(default=None, max_length=64, description="alipay_account: the holder's name")


class WithdrawalRequest(Strict):
    withdrawal_id: str = Key
    amount_minor: AmountMinor
    fee_minor: AmountMinorOrZero = 0
    currency: Currency = "CNY"
    rail: Rail = Field(default="bank", description="bank (the verified bound card), wechat_change, alipay_account")
    payee: WithdrawalPayee | None = Field(default=None, description="required on wechat_change / alipay_account")


class PaymentRequest(Strict):
    payment_id: str = Key
    merchant_id: str = HolderId
    amount_minor: AmountMinor
    platform_fee_minor: AmountMinorOrZero = 0
    currency: Currency = "CNY"
    subaccount_type: Literal["balance", "prepaid", "credit"] = "balance"
    subaccount_id: str | None = Field(default=None, min_length=1, max_length=64)
    pending: StrictBool = False
    timeout_seconds: StrictInt | None = Field(default=None, ge=1, le=7 * 24 * 3600)


class WalletTransferRequest(Strict):
    transfer_id: str = Key
    to_holder_id: str = HolderId
    amount_minor: AmountMinor
    currency: Currency = "CNY"


class PrepaidPurchaseRequest(Strict):
    order_id: str = Key
    merchant_id: str = HolderId
    amount_minor: AmountMinor
    currency: Currency = "CNY"


class PointsGrantRequest(Strict):
    grant_id: str = Key
    points: AmountMinor


class PointsExchangeRequest(Strict):
    exchange_id: str = Key
    points: AmountMinor
    currency: Currency = "CNY"


class CreditLineRequest(Strict):
    limit_minor: AmountMinorOrZero
    currency: Currency = "CNY"


class BillIssueRequest(Strict):
    period: str = Field(pattern=r"^\d{4}(0[1-9]|1[0-2])$", examples=["202611"])
    due_in_days: StrictInt = Field(default=20, ge=0, le=60)
    currency: Currency = "CNY"


class RepaymentRequest(Strict):
    repayment_id: str = Key
    amount_minor: AmountMinor


class OperationResponse(BaseModel):
    id: str
    holder_id: str
    kind: str
    idempotency_key: str
    transfer_id: str
    status: str
    amount_minor: int
    currency: str
    details: dict[str, Any]
    created_at: datetime
    replayed: bool = False


class BillResponse(BaseModel):
    id: str
    holder_id: str
    currency: str
    period: str
    amount_due_minor: int
    repaid_minor: int
    status: str
    due_at: datetime


class SubaccountBalances(BaseModel):
    posted_balance_minor: int
    available_balance_minor: int
    pending_out_minor: int
    pending_in_minor: int


class SubaccountView(BaseModel):
    account_id: str
    subaccount_type: str
    merchant_id: str | None
    currency: str
    status: str
    credit_limit_minor: int
    balances: SubaccountBalances
    entitlements: dict[str, EntitlementSchema]


class HistoryItem(BaseModel):
    entry_id: int
    account_id: str
    transfer_id: str
    operation: str | None
    reference: str | None
    direction: str
    kind: str
    amount_minor: int
    currency: str
    created_at: datetime


class MyWalletResponse(BaseModel):
    holder: HolderResponse
    totals: dict[str, SubaccountBalances]
    subaccounts: list[SubaccountView]
    points: int
    coupons_minor: int
    credit: dict[str, Any] | None
    bills: list[BillResponse]
    recent: list[HistoryItem]


class HistoryResponse(ListPage[HistoryItem]):
    """A sub-account's history newest first (libs.common.paging: the one list shape)."""


class EntitlementChangeList(ListPage[dict[str, Any]]):
    """The audit of entitlement changes, newest first (the one list shape)."""


class MerchantBalancesResponse(BaseModel):
    merchant_id: str
    currency: str
    pending_minor: int
    settled_minor: int
    available_to_withdraw_minor: int
    payout_in_transit_minor: int


class TopUpPayer(Strict):
    """Hints the cashier passes to the channel (the payer's openid for JSAPI, client type and IP)."""

    openid: str | None = Field(default=None, max_length=128)
    client_type: str | None = Field(default=None, max_length=32)
    client_ip: str | None = Field(default=None, max_length=64)


class TopUpOrderRequest(Strict):
    amount_minor: AmountMinor
    currency: Currency = "CNY"
    scene: Literal["native_qr", "jsapi", "mini_program", "app", "h5", "page"]
    payer: TopUpPayer | None = None
    idempotency_key: str = Key


class TopUpRefundHoldRequest(Strict):
    """The cashier, before it asks the channel to refund a top-up: hold that much of the holder's balance."""

    refund_id: str = Key
    payment_id: str = Key
    amount_minor: AmountMinor
    currency: Currency = "CNY"
    # How long the hold waits for the refund's outcome; past it the money is the holder's again (an orphan of a
    # cashier that died before recording its refund). A refund paid out later is posted without the hold.
    timeout_seconds: StrictInt = Field(default=14 * 24 * 3600, ge=1, le=90 * 24 * 3600)


class TopUpOrderResponse(BaseModel):
    """The order and the cashier's payment (id, status, `payer_action`: QR code, JSAPI/app params, URL).
    `operation_id` is the wallet's top-up operation once the payment succeeded and the wallet was credited."""

    id: str
    holder_id: str
    amount_minor: int
    currency: str
    scene: str
    merchant_id: str
    merchant_order_no: str
    payment_id: str | None
    payment: dict[str, Any] | None
    credited: bool
    operation_id: str | None
    created_at: datetime
