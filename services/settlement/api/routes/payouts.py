"""Payouts: merchants request and list payouts of settled funds (`/v1/payouts`), the platform lists all
(`/v1/settlement/payouts`); the bank's signed callbacks land on `/v1/notify/bank`."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.internal_auth import CallerLivemode, MerchantScope
from libs.common.paging import KnownQueryOnly, cursor_query
from libs.common.web import UowDep
from services.settlement.api.deps import PageLimit, PayoutsDep, PlatformOnly, WithdrawalsDep
from services.settlement.api.schemas import (
    PayoutCreateRequest,
    PayoutDecisionRequest,
    PayoutListResponse,
    PayoutResponse,
)
from services.settlement.clients.bank import SIGNATURE_HEADER
from services.settlement.domain.errors import INVALID_SIGNATURE, PAYOUT_NOT_FOUND
from services.settlement.flows.payouts import PayoutDraft
from services.settlement.store import payouts as store

router = APIRouter(tags=["payouts"])


Cursor = Annotated[str | None, cursor_query(r"^po_[0-9a-z]+$")]
PayoutStatus = Annotated[Literal["pending_approval", "pending", "succeeded", "failed", "rejected"] | None, Query()]


def _response(row: dict[str, object]) -> PayoutResponse:
    return PayoutResponse.model_validate({k: row[k] for k in PayoutResponse.model_fields})


@router.post("/v1/payouts", status_code=201)
async def create_payout(
    body: PayoutCreateRequest,
    merchant_id: MerchantScope,
    payouts: PayoutsDep,
    response: Response,
    livemode: CallerLivemode,
) -> PayoutResponse:
    """Pay settled funds out to the merchant's bank account (or, by `rail`, WeChat change / an Alipay account);
    above the settled balance → 422. In the key's mode (live without one): a test payout is paid from the test
    book and simulated as paid, never sent to a bank or channel (docs/test-mode.md)."""
    draft = PayoutDraft(
        body.amount_minor,
        body.currency,
        body.account_no,
        body.account_name,
        body.idempotency_key,
        rail=body.rail,
        livemode=livemode is not False,
    )
    row, created = await payouts.request(merchant_id, draft)
    if not created:
        response.status_code = 200
    return _response(row)


@router.get("/v1/payouts/{payout_id}")
async def get_payout(
    payout_id: str, merchant_id: MerchantScope, payouts: PayoutsDep, livemode: CallerLivemode
) -> PayoutResponse:
    """One of the merchant's payouts; 404 for one of the other mode than the key's."""
    row = await payouts.read(payout_id, merchant_id, livemode)
    if not row:
        raise Problem(PAYOUT_NOT_FOUND, f"no payout {payout_id}")
    return _response(row)


def _page(rows: list[Any], limit: int) -> PayoutListResponse:
    return PayoutListResponse.of(rows, limit, item=lambda r: _response(dict(r)), cursor_of=lambda p: p.payout_id)


@router.get("/v1/payouts", dependencies=[KnownQueryOnly])
async def list_payouts(
    merchant_id: MerchantScope,
    uow: UowDep,
    limit: PageLimit,
    livemode: CallerLivemode,
    status: PayoutStatus = None,
    cursor: Cursor = None,
) -> PayoutListResponse:
    """The merchant's own payouts of the key's mode (a caller without one: `livemode`, else both), newest first;
    `next_cursor` pages on."""
    async with uow.read() as conn:
        rows = await store.list_payouts(
            conn, holder_id=merchant_id, status=status, before_id=cursor, limit=limit + 1, livemode=livemode
        )
    return _page(rows, limit)


@router.get("/v1/settlement/payouts", dependencies=[PlatformOnly, KnownQueryOnly])
async def list_all_payouts(
    uow: UowDep,
    limit: PageLimit,
    livemode: CallerLivemode,
    holder_id: Annotated[str | None, Query(max_length=64)] = None,
    status: PayoutStatus = None,
    cursor: Cursor = None,
) -> PayoutListResponse:
    """The platform's view: every merchant's payouts (or one holder's), newest first, of one mode if asked."""
    async with uow.read() as conn:
        rows = await store.list_payouts(
            conn, holder_id=holder_id, status=status, before_id=cursor, limit=limit + 1, livemode=livemode
        )
    return _page(rows, limit)


@router.post("/v1/settlement/payouts/{payout_id}/approve", dependencies=[PlatformOnly])
async def approve_payout(payout_id: str, body: PayoutDecisionRequest, payouts: PayoutsDep) -> PayoutResponse:
    """A held payout (`pending_approval`) approved: it is paid as any payout (the settled balance checked again
    by the ledger). 409 `payout_not_awaiting_approval` once decided."""
    return _response(await payouts.decide(payout_id, approve=True, actor=body.actor, reason=body.reason))


@router.post("/v1/settlement/payouts/{payout_id}/reject", dependencies=[PlatformOnly])
async def reject_payout(payout_id: str, body: PayoutDecisionRequest, payouts: PayoutsDep) -> PayoutResponse:
    """A held payout rejected (a reason is required): final `rejected`, nothing was moved."""
    if not body.reason:
        raise Problem(VALIDATION_FAILED, "a rejection needs a reason", field="reason")
    return _response(await payouts.decide(payout_id, approve=False, actor=body.actor, reason=body.reason))


@router.post("/v1/notify/bank", status_code=204)
async def bank_notify(request: Request, payouts: PayoutsDep, withdrawals: WithdrawalsDep) -> Response:
    """The bank's signed `payout.finished` callback, for a merchant payout or a wallet withdrawal (payout_no =
    the wallet operation id). Verified before anything is read; a repeat is a no-op."""
    body = await request.body()
    if not payouts.bank.verify_callback(body, request.headers.get(SIGNATURE_HEADER)):
        raise Problem(INVALID_SIGNATURE, "bank callback signature does not verify")
    event = json.loads(body)
    if event.get("status") not in ("SUCCEEDED", "FAILED") or not isinstance(event.get("payout_no"), str):
        raise Problem(VALIDATION_FAILED, "not a final payout callback")
    if (await withdrawals.read(event["payout_no"])).get("operation_id"):  # a wallet withdrawal (docs/contracts.md §3)
        await withdrawals.apply_outcome(event["payout_no"], event["status"], event.get("failure_code"))
    else:
        await payouts.apply_outcome(event["payout_no"], event["status"], event.get("failure_code"))
    return Response(status_code=204)
