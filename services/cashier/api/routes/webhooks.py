"""Merchant webhook deliveries: the log per payment, one delivery with its attempts, manual resend."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from libs.common.errors import Problem
from libs.common.internal_auth import Identity
from libs.common.paging import KnownQueryOnly, cursor_query
from services.cashier.api.deps import (
    Caller,
    CashierDep,
    MerchantId,
    PageSizeOrMax,
    PaymentOfCallersMode,
    ensure_payment_in_mode,
)
from services.cashier.api.schemas import WebhookDeliveryList, WebhookDeliveryResponse
from services.cashier.domain.errors import PAYMENT_NOT_FOUND, WEBHOOK_DELIVERY_NOT_FOUND
from services.cashier.flows.context import Cashier
from services.cashier.flows.views import delivery_view
from services.cashier.store.payments import get_payment
from services.cashier.store.webhooks import get_delivery, list_deliveries, list_delivery_attempts, resend_delivery

router = APIRouter(tags=["webhooks"])


@router.get("/v1/payments/{payment_id}/webhook-deliveries", dependencies=[KnownQueryOnly, PaymentOfCallersMode])
async def list_for_payment(
    payment_id: str,
    merchant_id: MerchantId,
    cashier: CashierDep,
    limit: PageSizeOrMax,
    cursor: Annotated[str | None, cursor_query(r"^[0-9]{1,18}$")] = None,
) -> WebhookDeliveryList:
    async with cashier.uow.read() as conn:
        if await get_payment(conn, merchant_id=merchant_id, payment_id=payment_id) is None:
            raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
        rows = await list_deliveries(
            conn,
            merchant_id=merchant_id,
            payment_id=payment_id,
            limit=limit + 1,
            after_seq=int(cursor) if cursor else None,
        )
    seq = {r.id: r.seq for r in rows}
    return WebhookDeliveryList.of(
        rows,
        limit,
        item=lambda r: WebhookDeliveryResponse.model_validate(delivery_view(r)),
        cursor_of=lambda d: str(seq[d.id]),
    )


@router.get("/v1/webhook-deliveries/{delivery_id}")
async def read(
    delivery_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep
) -> WebhookDeliveryResponse:
    await _delivery_in_mode(cashier, caller, merchant_id, delivery_id)
    async with cashier.uow.read() as conn:
        row = await get_delivery(conn, merchant_id=merchant_id, delivery_id=delivery_id)
        if row is None:
            raise Problem(WEBHOOK_DELIVERY_NOT_FOUND, f"webhook delivery {delivery_id} does not exist")
        attempts = await list_delivery_attempts(conn, delivery_id, limit=cashier.settings.page_size_max)
    return WebhookDeliveryResponse.model_validate(delivery_view(row, attempts))


async def _delivery_in_mode(cashier: Cashier, caller: Identity, merchant_id: str, delivery_id: str) -> None:
    """404 for a delivery of a payment of the other mode than the caller's key (docs/test-mode.md)."""
    async with cashier.uow.read() as conn:
        row = await get_delivery(conn, merchant_id=merchant_id, delivery_id=delivery_id)
    if row is not None:
        try:
            await ensure_payment_in_mode(cashier, caller, merchant_id, row.payment_id)
        except Problem:
            raise Problem(WEBHOOK_DELIVERY_NOT_FOUND, f"webhook delivery {delivery_id} does not exist") from None


@router.post("/v1/webhook-deliveries/{delivery_id}/resend", status_code=202)
async def resend(
    delivery_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep
) -> WebhookDeliveryResponse:
    await _delivery_in_mode(cashier, caller, merchant_id, delivery_id)
    async with cashier.uow.begin() as tx:
        row = await resend_delivery(tx.conn, merchant_id=merchant_id, delivery_id=delivery_id, now=cashier.clock())
    if row is None:
        raise Problem(WEBHOOK_DELIVERY_NOT_FOUND, f"webhook delivery {delivery_id} does not exist")
    return WebhookDeliveryResponse.model_validate(delivery_view(row))
