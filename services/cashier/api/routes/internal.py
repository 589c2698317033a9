"""Internal calls from other Juhe services (the gateway answers 404 for /v1/internal from outside)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.cashier.api.deps import CashierDep
from services.cashier.api.schemas import PaymentResponse, TransferCreateRequest, TransferResponse
from services.cashier.connectors.base import TransferRequest
from services.cashier.flows.payments import requery_payment
from services.cashier.flows.transfers import TransferDraft, cancel_transfer, query_transfer, submit_transfer

router = APIRouter(tags=["internal"])


@router.post("/v1/internal/payments/{payment_id}/requery")
async def requery(payment_id: str, cashier: CashierDep) -> PaymentResponse:
    """Settlement's reconciliation found the channel billing this payment as paid: ask the channel again."""
    return PaymentResponse.model_validate(await requery_payment(cashier, payment_id=payment_id))


PayingMerchant = Annotated[str, Query(min_length=1, max_length=64, description="Whose channel account pays")]
Livemode = Annotated[
    bool | None, Query(description="The money's mode: that mode's configuration (absent: the only one)")
]


@router.post("/v1/internal/transfers")
async def create_transfer(body: TransferCreateRequest, cashier: CashierDep) -> TransferResponse:
    """Settlement pays a payout / withdrawal to a user's channel account; a repeat answers the same bill."""
    request = TransferRequest(
        out_transfer_no=body.out_transfer_no,
        amount_minor=body.amount_minor,
        currency=body.currency,
        payee=body.payee,
        payee_type=body.payee_type,
        payee_name=body.payee_name,
        remark=body.remark,
        scene_id=body.scene_id,
    )
    view: dict[str, Any] = await submit_transfer(
        cashier,
        TransferDraft(merchant_id=body.merchant_id, channel=body.channel, request=request, livemode=body.livemode),
    )
    return TransferResponse.model_validate(view)


@router.get("/v1/internal/transfers/{channel}/{out_transfer_no}")
async def get_transfer(
    channel: str, out_transfer_no: str, merchant_id: PayingMerchant, cashier: CashierDep, livemode: Livemode = None
) -> TransferResponse:
    return TransferResponse.model_validate(
        await query_transfer(
            cashier, merchant_id=merchant_id, channel=channel, out_transfer_no=out_transfer_no, livemode=livemode
        )
    )


@router.post("/v1/internal/transfers/{channel}/{out_transfer_no}/cancel")
async def cancel(
    channel: str, out_transfer_no: str, merchant_id: PayingMerchant, cashier: CashierDep, livemode: Livemode = None
) -> TransferResponse:
    """Withdraw a WeChat transfer the user has not confirmed (its confirmation deadline passed at Juhe)."""
    return TransferResponse.model_validate(
        await cancel_transfer(
            cashier, merchant_id=merchant_id, channel=channel, out_transfer_no=out_transfer_no, livemode=livemode
        )
    )
