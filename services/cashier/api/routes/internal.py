"""Internal calls from other Juhe services (the gateway answers 404 for /v1/internal from outside)."""

from __future__ import annotations

from fastapi import APIRouter

from services.cashier.api.deps import CashierDep
from services.cashier.api.schemas import PaymentResponse
from services.cashier.flows.payments import requery_payment

router = APIRouter(tags=["internal"])


@router.post("/v1/internal/payments/{payment_id}/requery")
async def requery(payment_id: str, cashier: CashierDep) -> PaymentResponse:
    """Settlement's reconciliation found the channel billing this payment as paid: ask the channel again."""
    return PaymentResponse.model_validate(await requery_payment(cashier, payment_id=payment_id))
