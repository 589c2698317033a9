"""Payouts: merchants request payouts of settled funds; the bank's signed callbacks land here."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.internal_auth import MerchantScope
from services.settlement.api.schemas import PayoutCreateRequest, PayoutResponse
from services.settlement.domain.errors import INVALID_SIGNATURE, PAYOUT_NOT_FOUND
from services.settlement.flows.bank import SIGNATURE_HEADER
from services.settlement.flows.payouts import PayoutDraft, Payouts

router = APIRouter(tags=["payouts"])


def get_payouts(request: Request) -> Payouts:
    payouts: Payouts = request.app.state.runtime.extras["payouts"]
    return payouts


PayoutsDep = Annotated[Payouts, Depends(get_payouts)]


def _response(row: dict[str, object]) -> PayoutResponse:
    return PayoutResponse.model_validate({k: row[k] for k in PayoutResponse.model_fields})


@router.post("/v1/merchant/payouts", status_code=201)
async def create_payout(body: PayoutCreateRequest, merchant_id: MerchantScope, payouts: PayoutsDep,
                        response: Response) -> PayoutResponse:  # fmt: skip
    """Pay settled funds out to the merchant's bank account; above the settled balance → 422."""
    draft = PayoutDraft(body.amount_minor, body.currency, body.account_no, body.account_name, body.idempotency_key)
    row, created = await payouts.request(merchant_id, draft)
    if not created:
        response.status_code = 200
    return _response(row)


@router.get("/v1/merchant/payouts/{payout_id}")
async def get_payout(payout_id: str, merchant_id: MerchantScope, payouts: PayoutsDep) -> PayoutResponse:
    row = await payouts.read(payout_id, merchant_id)
    if not row:
        raise Problem(PAYOUT_NOT_FOUND, f"no payout {payout_id}")
    return _response(row)


@router.post("/v1/bank/notify", status_code=204)
async def bank_notify(request: Request, payouts: PayoutsDep) -> Response:
    """The bank's signed `payout.finished` callback. Verified before anything is read; a repeat is a no-op."""
    body = await request.body()
    if not payouts.bank.verify_callback(body, request.headers.get(SIGNATURE_HEADER)):
        raise Problem(INVALID_SIGNATURE, "bank callback signature does not verify")
    event = json.loads(body)
    if event.get("status") not in ("SUCCEEDED", "FAILED") or not isinstance(event.get("payout_no"), str):
        raise Problem(VALIDATION_FAILED, "not a final payout callback")
    await payouts.apply_outcome(event["payout_no"], event["status"], event.get("failure_code"))
    return Response(status_code=204)
