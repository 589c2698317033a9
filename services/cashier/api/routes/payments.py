"""Payments: create, read, look up by merchant order number, list, close; a wallet payer's confirmation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from libs.common.errors import Problem
from libs.common.internal_auth import DEV_KEY_ID
from services.cashier.api.deps import Caller, CashierDep, MerchantId, PageSize
from services.cashier.api.schemas import PaymentConfirmRequest, PaymentCreateRequest, PaymentPage, PaymentResponse
from services.cashier.domain.errors import PAYER_MISMATCH, PAYMENT_NOT_FOUND, PURPOSE_NOT_ALLOWED
from services.cashier.domain.payments import may_create_purpose
from services.cashier.flows.payments import PaymentDraft, close_payment, create_payment, read_payment
from services.cashier.flows.views import payment_view
from services.cashier.flows.wallet import confirm_wallet_payment
from services.cashier.flows.webhook_targets import ensure_allowed_notify_url
from services.cashier.store.payments import list_payments

router = APIRouter(prefix="/v1/payments", tags=["payments"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: PaymentCreateRequest, merchant_id: MerchantId, caller: Caller, cashier: CashierDep, response: Response
) -> PaymentResponse:
    if not may_create_purpose(body.purpose, service=caller.service, platform=caller.platform):
        raise Problem(PURPOSE_NOT_ALLOWED, f"a {caller.kind} identity cannot create a {body.purpose.value} payment")
    ensure_allowed_notify_url(cashier.settings, body.notify_url)
    draft = PaymentDraft(
        merchant_order_no=body.merchant_order_no,
        amount_minor=body.amount_minor,
        currency=body.currency,
        description=body.description,
        scene=body.scene,
        payer=payer_of(body),
        expire_at=body.expire_at,
        notify_url=body.notify_url,
        return_url=body.return_url,
        metadata=body.metadata,
        preferred_channels=tuple(body.preferred_channels),
        excluded_channels=tuple(body.excluded_channels),
        purpose=body.purpose,
        wallet_holder_id=body.wallet_holder_id,
        profit_sharing=body.profit_sharing,
        split=tuple((line.receiver_id, line.amount_minor) for line in body.split) if body.split is not None else None,
        coupon_id=body.coupon_id,
        coupon_code=body.coupon_code,
    )
    result = await create_payment(cashier, merchant_id=merchant_id, draft=draft)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return PaymentResponse.model_validate(result.payment)


def payer_of(body: PaymentCreateRequest) -> dict[str, Any]:
    """The stored payer: the hints, plus the scanned auth_code of a payment_code payment (a re-drive after a
    crash must charge the same code; the code is single-use and valid about a minute)."""
    payer = body.payer.model_dump(exclude_none=True)
    if body.auth_code is not None:
        payer["auth_code"] = body.auth_code
    return payer


@router.get("")
async def list_(
    merchant_id: MerchantId,
    cashier: CashierDep,
    limit: PageSize,
    merchant_order_no: str | None = None,
    status_: Annotated[str | None, Query(alias="status")] = None,
    channel: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: str | None = None,
) -> PaymentPage:
    """Newest first. `merchant_order_no` looks one payment up (404 when there is none)."""
    if merchant_order_no is not None:
        from services.cashier.store.payments import get_payment_by_order_no

        async with cashier.uow.read() as conn:
            row = await get_payment_by_order_no(conn, merchant_id=merchant_id, merchant_order_no=merchant_order_no)
        if row is None:
            raise Problem(PAYMENT_NOT_FOUND, f"no payment with merchant order number {merchant_order_no}")
        return PaymentPage(data=[PaymentResponse.model_validate(payment_view(row, []))], next_cursor=None)
    async with cashier.uow.read() as conn:
        rows = await list_payments(
            conn,
            merchant_id=merchant_id,
            limit=limit + 1,
            after_id=cursor,
            status=status_,
            channel=channel,
            created_from=created_from,
            created_to=created_to,
        )
    page = [PaymentResponse.model_validate(payment_view(r, [])) for r in rows[:limit]]
    return PaymentPage(data=page, next_cursor=page[-1].id if len(rows) > limit else None)


@router.get("/{payment_id}")
async def read(payment_id: str, merchant_id: MerchantId, cashier: CashierDep) -> PaymentResponse:
    return PaymentResponse.model_validate(await read_payment(cashier, merchant_id=merchant_id, payment_id=payment_id))


@router.post("/{payment_id}/close")
async def close(payment_id: str, merchant_id: MerchantId, cashier: CashierDep) -> PaymentResponse:
    return PaymentResponse.model_validate(await close_payment(cashier, merchant_id=merchant_id, payment_id=payment_id))


@router.post("/{payment_id}/confirm")
async def confirm(
    payment_id: str, caller: Caller, cashier: CashierDep, body: PaymentConfirmRequest | None = None
) -> PaymentResponse:
    """The payer confirms a wallet payment. The payer is the gateway-authenticated user; in dev/test (no
    identity token) the body's `user_id` stands for it. A user token carrying a merchant is scoped to it."""
    payer = caller.user or (body.user_id if body and caller.key_id == DEV_KEY_ID else None)
    if not payer:
        raise Problem(PAYER_MISMATCH, "only the paying user can confirm a wallet payment")
    if caller.user and body and body.user_id and body.user_id != caller.user:
        raise Problem(PAYER_MISMATCH, "user_id does not match the authenticated user")
    scope = caller.merchant_id if caller.user else None
    view = await confirm_wallet_payment(cashier, payment_id=payment_id, payer_user_id=payer, merchant_id=scope)
    return PaymentResponse.model_validate(view)
