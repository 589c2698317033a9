"""Internal endpoints for other Juhe services (prefix /v1/internal: the gateway never routes it)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from libs.common.errors import Problem
from libs.common.web import UowDep
from services.settlement.api.deps import PlatformOnly, SettlementContextDep
from services.settlement.api.schemas import SplitCheckRequest, SplitCheckResponse
from services.settlement.domain import splits as split_math
from services.settlement.domain.errors import SPLIT_RULE_NOT_FOUND
from services.settlement.store import records

router = APIRouter(prefix="/v1/internal", tags=["internal"], dependencies=[PlatformOnly])


@router.post("/split-checks")
async def check_split(body: SplitCheckRequest, uow: UowDep) -> SplitCheckResponse:
    """The split check (docs/contracts.md §1): may this payment carry this explicit split? The same check runs
    again when the payment succeeds, so a rule changed in between cannot be bypassed."""
    async with uow.read() as conn:
        rule = await records.split_rule(conn, body.merchant_id, body.business_line)
        rate = await records.platform_rate_bps(conn, body.merchant_id)
    if rule is None:
        raise Problem(SPLIT_RULE_NOT_FOUND, f"merchant {body.merchant_id} has no split rule")
    keep = body.amount_minor - split_math.platform_fee_minor(body.amount_minor, rate or 0)
    split_math.validate_explicit([(e.receiver_id, e.amount_minor) for e in body.split], records.math_rule(rule), keep)
    return SplitCheckResponse(ok=True)


@router.post("/transfers/{transfer_no}/nudge", status_code=204)
async def nudge_transfer(transfer_no: str, context: SettlementContextDep) -> Response:
    """The cashier verified a channel's callback about a payout-rail transfer: step its payout or withdrawal now
    (the answer is asked from the channel again, so the callback's content is never trusted on its own)."""
    for flow in (context.withdrawals, context.payouts):
        key = await flow.pending_by_transfer_no(transfer_no)
        if key is not None:
            await flow.step(key)
            break
    return Response(status_code=204)
