"""Channel profit sharing of a paid payment (internal, docs/contracts.md §2: settlement calls it)."""

from __future__ import annotations

from fastapi import APIRouter

from services.cashier.api.deps import CashierDep
from services.cashier.api.schemas import ProfitSharingCreateRequest, ProfitSharingResponse
from services.cashier.flows.profit_sharing import ShareDraft, ShareLine, read_share_order, share_payment

router = APIRouter(prefix="/v1/internal/payments/{payment_id}/profit-sharing", tags=["internal"])


@router.post("")
async def create(payment_id: str, body: ProfitSharingCreateRequest, cashier: CashierDep) -> ProfitSharingResponse:
    """Idempotent by (payment_id, order_no); 503 channel_unavailable is safe to retry with the same order_no."""
    draft = ShareDraft(
        order_no=body.order_no,
        finish=body.finish,
        receivers=tuple(
            ShareLine(
                type=r.type, account=r.account, name=r.name, amount_minor=r.amount_minor, description=r.description
            )
            for r in body.receivers
        ),
    )
    return ProfitSharingResponse.model_validate(await share_payment(cashier, payment_id=payment_id, draft=draft))


@router.get("/{order_no}")
async def read(payment_id: str, order_no: str, cashier: CashierDep) -> ProfitSharingResponse:
    return ProfitSharingResponse.model_validate(
        await read_share_order(cashier, payment_id=payment_id, order_no=order_no)
    )
