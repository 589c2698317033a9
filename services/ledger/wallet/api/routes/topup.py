"""Top-up orders (docs/contracts.md §4, wallet top-up): the user (or the platform) asks for a top-up; the ledger
checks the entitlement, records the order and places a `wallet_topup` payment with the cashier for the platform's
collecting merchant; the payer pays it at the channel; the ledger's consumer of `payment.succeeded` then
credits the wallet (§3.7) and publishes `top_up.credited`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.engine import RowMapping

from libs.common.ids import new_id
from libs.common.web import UowDep
from services.ledger.api.deps import SettingsDep, WriterDep
from services.ledger.wallet.api import schemas as s
from services.ledger.wallet.api.access import holder_scope
from services.ledger.wallet.api.routes.wallet import _answer
from services.ledger.wallet.clients import cashier as cashier_client
from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.store import topup as orders
from services.ledger.wallet.store import wallet as store

router = APIRouter(prefix="/v1/wallet", tags=["wallet"], dependencies=[Depends(holder_scope)])


def order_response(
    row: RowMapping, payment: dict[str, Any] | None, operation: RowMapping | None
) -> s.TopUpOrderResponse:
    return s.TopUpOrderResponse(
        id=row["id"],
        holder_id=row["holder_id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        scene=row["scene"],
        merchant_id=row["merchant_id"],
        merchant_order_no=row["merchant_order_no"],
        payment_id=row["payment_id"],
        payment=payment,
        credited=operation is not None and operation["status"] == "posted",
        operation_id=operation["id"] if operation is not None else None,
        created_at=row["created_at"],
    )


@router.post("/holders/{holder_id}/top-up-orders", status_code=status.HTTP_201_CREATED)
async def create_top_up_order(
    holder_id: str, body: s.TopUpOrderRequest, uow: UowDep, settings: SettingsDep, response: Response
) -> s.TopUpOrderResponse:
    """201 with the cashier's payment (pay it with its `payer_action`); the same key and body again → 200
    with the same payment; another body → 409. Cashier down → 503, safe to retry with the same key."""
    if not settings.cashier_url or not settings.wallet_topup_merchant_id:
        raise WalletError(errors.TOP_UP_UNAVAILABLE, "cashier_url and wallet_topup_merchant_id are not set")
    payer = body.payer.model_dump(exclude_none=True) if body.payer else {}
    values = {
        "id": new_id("wto"),
        "holder_id": holder_id,
        "idempotency_key": body.idempotency_key,
        "body_hash": store.body_hash({**body.model_dump(mode="json"), "payer": payer}),
        "amount_minor": body.amount_minor,
        "currency": body.currency,
        "scene": body.scene,
        "merchant_id": settings.wallet_topup_merchant_id,
        "merchant_order_no": orders.merchant_order_no(holder_id, body.idempotency_key),
    }
    async with uow.begin() as tx:
        existing = await orders.order_by_key(tx.conn, holder_id, body.idempotency_key)
        if existing is None:
            await orders.precheck_top_up(tx.conn, holder_id, body.amount_minor, body.currency, datetime.now(UTC))
        row = await orders.insert_order(tx.conn, values)
    created = row["id"] == values["id"]
    payment = await cashier_client.create_top_up_payment(
        settings,
        {
            "merchant_order_no": row["merchant_order_no"],
            "amount_minor": row["amount_minor"],
            "currency": row["currency"],
            "description": cashier_client.TOP_UP_DESCRIPTION,
            "scene": row["scene"],
            "payer": payer,
            "purpose": "wallet_topup",
            "wallet_holder_id": holder_id,
            "metadata": {"wallet_topup_order_id": row["id"]},
        },
    )
    async with uow.begin() as tx:
        await orders.set_payment(tx.conn, row["id"], str(payment["id"]))
        row = await orders.get_order(tx.conn, holder_id, row["id"]) or row
        operation = await store.operation_by_key(tx.conn, "top_up", str(payment["id"]))
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return order_response(row, payment, operation)


@router.get("/holders/{holder_id}/top-up-orders/{order_id}")
async def read_top_up_order(holder_id: str, order_id: str, uow: UowDep, settings: SettingsDep) -> s.TopUpOrderResponse:
    """The order, the cashier's payment as it is now, and whether the wallet was credited."""
    async with uow.read() as conn:
        row = await orders.get_order(conn, holder_id, order_id)
        if row is None:
            raise WalletError(errors.TOP_UP_ORDER_NOT_FOUND, f"no top-up order {order_id} of {holder_id}")
        operation = await store.operation_by_key(conn, "top_up", row["payment_id"]) if row["payment_id"] else None
    payment_id = row["payment_id"]
    payment = await cashier_client.read_payment(settings, row["merchant_id"], payment_id) if payment_id else None
    return order_response(row, payment, operation)


@router.post("/top-up-refunds", status_code=status.HTTP_201_CREATED)
async def hold_top_up_refund(
    body: s.TopUpRefundHoldRequest, uow: UowDep, writer: WriterDep, response: Response
) -> s.OperationResponse:
    """The cashier, before it asks the channel to refund a top-up: 201 the pending `top_up_refund` hold on the
    holder's balance (the same refund id again → 200, the same hold); 409 `top_up_refund_exceeds_balance` or
    `top_up_not_credited`, nothing held. A platform or Juhe service only (no holder in the path)."""
    return _answer(
        await orders.hold_refund(
            uow,
            writer,
            refund_id=body.refund_id,
            payment_id=body.payment_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            timeout_seconds=body.timeout_seconds,
            now=datetime.now(UTC),
        ),
        response,
    )
