"""Refunds of a payment: create (partial, repeated), read one, list a payment's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from libs.common.errors import Problem
from libs.common.paging import KnownQueryOnly, cursor_query
from services.cashier.api.deps import (
    Caller,
    CashierDep,
    MerchantId,
    PageSizeOrMax,
    PaymentOfCallersMode,
    ensure_payment_in_mode,
)
from services.cashier.api.schemas import RefundCreateRequest, RefundList, RefundResponse
from services.cashier.domain.errors import REFUND_NOT_FOUND
from services.cashier.flows.refunds import RefundDraft, create_refund, read_refund, read_refunds

router = APIRouter(tags=["refunds"])


@router.post(
    "/v1/payments/{payment_id}/refunds", status_code=status.HTTP_201_CREATED, dependencies=[PaymentOfCallersMode]
)
async def create(
    payment_id: str,
    body: RefundCreateRequest,
    merchant_id: MerchantId,
    cashier: CashierDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> RefundResponse:
    draft = RefundDraft(
        amount_minor=body.amount_minor,
        reason=body.reason,
        merchant_refund_no=body.merchant_refund_no,
        request_key=idempotency_key,
    )
    result = await create_refund(cashier, merchant_id=merchant_id, payment_id=payment_id, draft=draft)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return RefundResponse.model_validate(result.refund)


@router.get("/v1/payments/{payment_id}/refunds", dependencies=[KnownQueryOnly, PaymentOfCallersMode])
async def list_for_payment(
    payment_id: str,
    merchant_id: MerchantId,
    cashier: CashierDep,
    limit: PageSizeOrMax,
    cursor: Annotated[str | None, cursor_query(r"^re_[0-9a-z]+$")] = None,
) -> RefundList:
    rows, next_cursor = await read_refunds(
        cashier, merchant_id=merchant_id, payment_id=payment_id, limit=limit, cursor=cursor
    )
    return RefundList(
        data=[RefundResponse.model_validate(r) for r in rows], has_more=next_cursor is not None, next_cursor=next_cursor
    )


@router.get("/v1/refunds/{refund_id}")
async def read(refund_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> RefundResponse:
    """404 for a refund of a payment of the other mode than the caller's key (docs/test-mode.md)."""
    refund = await read_refund(cashier, merchant_id=merchant_id, refund_id=refund_id)
    try:
        await ensure_payment_in_mode(cashier, caller, merchant_id, refund["payment_id"])
    except Problem:
        raise Problem(REFUND_NOT_FOUND, f"refund {refund_id} does not exist") from None
    return RefundResponse.model_validate(refund)
