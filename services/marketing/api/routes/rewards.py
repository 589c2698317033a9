"""Reward rules: a coupon issued on an event, today a user's first payment (flows/rewards.py). Operators only (the
rule's stock may be any running Juhe stock, platform- or merchant-funded)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from libs.common.paging import KnownQueryOnly, ListPage
from libs.common.web import UowDep
from services.marketing.api.deps import OperatorDep, PageLimit, id_cursor
from services.marketing.flows import rewards

router = APIRouter(prefix="/v1/marketing", tags=["reward rules"])
Id = Annotated[str, Path(max_length=64)]
RewardRuleCursor = Annotated[str | None, id_cursor("rwd")]


class RewardRuleCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: Literal["first_payment"] = Field(description="What earns the coupon: the user's first payment")
    stock_id: str = Field(min_length=1, max_length=64, description="A Juhe stock (not a channel's) to issue from")
    merchant_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The first payment at this merchant; null: the first payment on the platform",
    )


class RewardRuleResponse(BaseModel):
    rule_id: str
    event: str
    merchant_id: str | None
    stock_id: str
    status: str = Field(description="running | ended")
    issued_count: int = Field(description="Coupons this rule issued")
    created_at: datetime


class RewardRuleListResponse(ListPage[RewardRuleResponse]):
    """Reward rules newest first (libs.common.paging: the one list shape)."""


def _response(row: Any) -> RewardRuleResponse:
    return RewardRuleResponse.model_validate(rewards.rule_view(row))


@router.post("/reward-rules", status_code=201)
async def create_rule(body: RewardRuleCreateRequest, who: OperatorDep, uow: UowDep) -> RewardRuleResponse:
    """Running at once: the next first payment earns a coupon of the stock (its budget and limits apply).
    Unknown stock → 404 `stock_not_found`; a channel stock → 422 `channel_user_required`; nothing created."""
    async with uow.begin() as tx:
        row = await rewards.create_rule(tx, event=body.event, stock_id=body.stock_id, merchant_id=body.merchant_id)
    return _response(row)


@router.get("/reward-rules", dependencies=[KnownQueryOnly])
async def list_rules(
    who: OperatorDep, uow: UowDep, limit: PageLimit, cursor: RewardRuleCursor = None
) -> RewardRuleListResponse:
    async with uow.read() as conn:
        rows = await rewards.list_rules(conn, before_id=cursor, limit=limit + 1)
    return RewardRuleListResponse.of(rows, limit, item=_response, cursor_of=lambda r: r.rule_id)


@router.post("/reward-rules/{rule_id}/end")
async def end_rule(rule_id: Id, who: OperatorDep, uow: UowDep) -> RewardRuleResponse:
    """Stops it (repeat: no-op); unknown → 404 `reward_rule_not_found`. Coupons issued stay the users'."""
    async with uow.begin() as tx:
        row = await rewards.end_rule(tx, rule_id)
    return _response(row)
