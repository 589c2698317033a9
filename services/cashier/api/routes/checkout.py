"""Hosted checkout: the merchant's sessions API, and the page's calls (by page token; the wallet by its user).

Merchant (signed through the gateway, idempotent there by `Idempotency-Key` and here by order number + body):
`POST /v1/checkout/sessions`, `GET /v1/checkout/sessions/{id}`, `POST /v1/checkout/sessions/{id}/expire`.
Page (the gateway forwards `/v1/checkout/pages` without authentication, rate-limited per address, like channel
notifications: the 256-bit page token in the path is the credential): `GET /v1/checkout/pages/{token}`,
`POST /v1/checkout/pages/{token}/payments`. Wallet (a signed-in user's token): `POST
/v1/checkout/wallet-payments/{token}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.metadata import METADATA_KEYS_MAX, Metadata, keys_at_most, metadata_description
from libs.common.modes import livemode_of
from libs.common.money import AmountMinor, Currency
from services.cashier.api.deps import Caller, CashierDep, MerchantId
from services.cashier.api.routes import payment_links
from services.cashier.api.schemas import ChannelName, OrderNo, PayerHints, Url
from services.cashier.domain import checkout as rules
from services.cashier.domain.errors import PAYER_MISMATCH
from services.cashier.flows import checkout as flows

router = APIRouter(tags=["checkout"])
# Payment links open checkout sessions and share the page prefix; served with this router (no second wiring).
router.include_router(payment_links.router)

Token = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^cst_[A-Za-z0-9_-]+$")]
RequestId = Annotated[str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PageScene = Annotated[str, StringConstraints(pattern=r"^(native_qr|h5|page|jsapi)$")]


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    quantity: int = Field(default=1, ge=1, le=100_000)
    amount_minor: AmountMinor = Field(description="This line's total (unit price × quantity), minor units")


class SessionCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_order_no: OrderNo
    amount_minor: AmountMinor
    currency: Currency
    description: str = Field(min_length=1, max_length=256)
    line_items: list[LineItem] = Field(default_factory=list, max_length=rules.LINE_ITEMS_MAX)
    allowed_methods: list[ChannelName] | None = Field(
        default=None, min_length=1, max_length=10, description="Only these channels (wechatpay, alipay, wallet, …)"
    )
    return_url: Url
    cancel_url: Url | None = None
    expires_in_seconds: int | None = Field(default=None, description="Default 900; 60 .. the channels' limit")
    locale: Annotated[str, StringConstraints(pattern=r"^(zh_CN|en)$")] | None = None
    wallet_holder_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="Only this user may pay by wallet"
    )
    # 2 keys fewer than a payment's: the session adds checkout_session_id and checkout_order_no to its payment's.
    metadata: Annotated[Metadata, keys_at_most(METADATA_KEYS_MAX - 2)] = Field(
        default_factory=dict, description=metadata_description(METADATA_KEYS_MAX - 2)
    )


class SessionResponse(BaseModel):
    id: str
    object: str
    merchant_id: str
    merchant_order_no: str
    status: str = Field(description="open | completed | expired")
    amount_minor: int
    currency: str
    description: str
    line_items: list[dict[str, Any]]
    allowed_methods: list[str] | None
    url: str = Field(description="The hosted page: send the payer here")
    return_url: str
    cancel_url: str | None
    locale: str | None
    wallet_holder_id: str | None
    metadata: dict[str, Any]
    expires_at: datetime
    payment_id: str | None = Field(description="The payment that paid the session (completed only)")
    payments_started: int
    payment_link_id: str | None = Field(default=None, description="The payment link it was opened from")
    livemode: bool = Field(description="Its payments are live (made with a live key); false: test, at sandboxes")
    completed_at: datetime | None
    expired_at: datetime | None
    created_at: datetime


class PagePayer(PayerHints):
    """What the page knows of its payer: the channel's web authorisation (JSAPI inside the app), never an identity."""

    oauth_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The code the app's authorisation returned; the cashier redeems it for the openid / buyer_id",
    )
    oauth_state: str | None = Field(default=None, max_length=128, description="The state of that authorisation")


class PagePaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: ChannelName
    scene: PageScene
    request_id: RequestId
    payer: PagePayer = Field(default_factory=PagePayer)


# An origin a browser sends: https, a host name (or IPv4), an optional port; no path. Lower-cased when stored.
Origin = Annotated[str, StringConstraints(max_length=300, pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")]


class CheckoutOriginsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origins: list[Origin] = Field(max_length=rules.FRAME_ORIGINS_MAX, description="Pages that may embed the checkout")


class CheckoutOriginsResponse(BaseModel):
    merchant_id: str
    origins: list[str]


class WalletPaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: RequestId


class UserPaymentRequest(BaseModel):
    """A signed-in payer's channel payment with one of their coupons."""

    model_config = ConfigDict(extra="forbid")

    method: ChannelName
    scene: PageScene
    request_id: RequestId
    coupon_id: str | None = Field(default=None, min_length=1, max_length=64, description="The payer's coupon")
    client_ip: str | None = Field(default=None, max_length=64)


@router.post("/v1/checkout/sessions", status_code=status.HTTP_201_CREATED)
async def create(
    body: SessionCreateRequest, merchant_id: MerchantId, caller: Caller, cashier: CashierDep, response: Response
) -> SessionResponse:
    if body.line_items and sum(item.amount_minor for item in body.line_items) != body.amount_minor:
        raise Problem(VALIDATION_FAILED, "line_items must add up to amount_minor")
    draft = flows.SessionDraft(
        merchant_order_no=body.merchant_order_no,
        amount_minor=body.amount_minor,
        currency=body.currency,
        description=body.description,
        line_items=[item.model_dump() for item in body.line_items],
        allowed_methods=tuple(body.allowed_methods) if body.allowed_methods is not None else None,
        return_url=body.return_url,
        cancel_url=body.cancel_url,
        expires_in_seconds=body.expires_in_seconds,
        locale=body.locale,
        wallet_holder_id=body.wallet_holder_id,
        metadata=dict(body.metadata),
        livemode=livemode_of(cashier.mode_of(caller)),
    )
    view, created = await flows.create_session(cashier, merchant_id=merchant_id, draft=draft)
    if not created:
        response.status_code = status.HTTP_200_OK
    return SessionResponse.model_validate(view)


@router.get("/v1/checkout/sessions/{session_id}")
async def read(session_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> SessionResponse:
    """404 for a session of the other mode than the caller's key (docs/test-mode.md)."""
    livemode = cashier.livemode_filter(caller)
    return SessionResponse.model_validate(
        await flows.read_session(cashier, merchant_id=merchant_id, session_id=session_id, livemode=livemode)
    )


@router.post("/v1/checkout/sessions/{session_id}/expire")
async def expire(session_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> SessionResponse:
    livemode = cashier.livemode_filter(caller)
    return SessionResponse.model_validate(
        await flows.expire_now(cashier, merchant_id=merchant_id, session_id=session_id, livemode=livemode)
    )


@router.get("/v1/checkout/pages/{token}")
async def page(
    token: Token,
    cashier: CashierDep,
    scene: Annotated[str | None, Query(pattern=r"^(native_qr|h5|page|jsapi)$")] = None,
) -> dict[str, Any]:
    """The page's view (no merchant secrets, no ids beyond the payment's); `scene` adds the methods offered."""
    return await flows.page_view(cashier, token, scene=scene)


@router.post("/v1/checkout/pages/{token}/payments")
async def start_payment(token: Token, body: PagePaymentRequest, cashier: CashierDep) -> dict[str, Any]:
    payer = body.payer.model_dump(exclude_none=True)
    # A wallet payer is named by the gateway, an in-app payer by the channel (the OAuth code), never by a body.
    for named in ("user_id", "openid", "buyer_id"):
        payer.pop(named, None)
    code, state = payer.pop("oauth_code", None), payer.pop("oauth_state", None)
    if (code is None) != (state is None):
        raise Problem(VALIDATION_FAILED, "payer.oauth_code and payer.oauth_state go together")
    return await flows.start_payment(
        cashier,
        token,
        method=body.method,
        scene=body.scene,
        payer=payer,
        request_id=body.request_id,
        oauth=(code, state) if code is not None and state is not None else None,
    )


@router.post("/v1/checkout/wallet-payments/{token}")
async def pay_with_wallet(
    token: Token, body: WalletPaymentRequest, caller: Caller, cashier: CashierDep
) -> dict[str, Any]:
    if not caller.user:
        raise Problem(PAYER_MISMATCH, "only a signed-in user pays from a wallet")
    return await flows.pay_with_wallet(cashier, token, user_id=caller.user, request_id=body.request_id)


@router.post("/v1/checkout/user-payments/{token}")
async def pay_as_user(token: Token, body: UserPaymentRequest, caller: Caller, cashier: CashierDep) -> dict[str, Any]:
    """The signed-in payer (the user the gateway names, never one in the body) pays by a channel, with a coupon."""
    if not caller.user:
        raise Problem(PAYER_MISMATCH, "only a signed-in user pays as a named payer")
    return await flows.pay_as_user(
        cashier,
        token,
        user_id=caller.user,
        method=body.method,
        scene=body.scene,
        request_id=body.request_id,
        coupon_id=body.coupon_id,
        client_ip=body.client_ip,
    )


@router.put("/v1/admin/merchants/{merchant_id}/checkout-origins")
async def put_checkout_origins(
    merchant_id: str, body: CheckoutOriginsRequest, cashier: CashierDep
) -> CheckoutOriginsResponse:
    """The platform registers where a merchant embeds the checkout (juhe.js): the page's frame-ancestors."""
    return CheckoutOriginsResponse.model_validate(
        await flows.set_checkout_origins(cashier, merchant_id=merchant_id, origins=list(body.origins))
    )


@router.get("/v1/admin/merchants/{merchant_id}/checkout-origins")
async def get_checkout_origins(merchant_id: str, cashier: CashierDep) -> CheckoutOriginsResponse:
    return CheckoutOriginsResponse.model_validate(await flows.read_checkout_origins(cashier, merchant_id=merchant_id))
