"""Campaigns and coupon stocks: definition (checked by the domain), the named status transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from libs.common.db import Tx
from libs.common.errors import Problem
from libs.common.ids import new_id
from services.marketing.domain import rules
from services.marketing.domain.actors import Actor
from services.marketing.domain.errors import (
    BUDGET_BELOW_ISSUED,
    CAMPAIGN_NOT_FOUND,
    INVALID_STOCK,
    INVALID_STOCK_TRANSITION,
    STOCK_NOT_FOUND,
)
from services.marketing.store import stocks as store


async def create_campaign(tx: Tx, actor: Actor, *, name: str, description: str) -> RowMapping:
    """A merchant's campaign is its own; an operator's is the platform's unless it acts for a merchant."""
    return await store.insert_campaign(
        tx.conn,
        {
            "campaign_id": new_id("cmp"),
            "owner_merchant_id": actor.merchant_id,
            "name": name,
            "description": description,
        },
    )


@dataclass(frozen=True, slots=True)
class StockDraft:
    campaign_id: str
    name: str
    terms: rules.StockRules
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days_after_claim: int | None
    refund_policy: rules.RefundPolicy
    budget_count: int
    budget_minor: int | None
    per_user_limit: int
    per_user_daily_limit: int | None
    daily_count_limit: int | None
    points_price: int | None = None
    channel: str | None = None  # mirrored at this channel programme (flows/channel_stocks.py)


async def create_stock(tx: Tx, actor: Actor, draft: StockDraft) -> RowMapping:
    """A stock in `draft`; its budget counters start full. Merchants define only self-funded stocks that
    apply to themselves, inside their own campaigns."""
    campaign = await store.get_campaign(tx.conn, draft.campaign_id, actor.owner_scope)
    if campaign is None:
        raise Problem(CAMPAIGN_NOT_FOUND, f"no campaign {draft.campaign_id}")
    r = draft.terms
    if draft.channel is not None:  # the creator's channel account pays for the coupons (flows/channel_stocks.py)
        creator = "merchant" if campaign["owner_merchant_id"] else "platform"
        if r.funding_party != creator:
            raise Problem(
                INVALID_STOCK, f"a channel stock is funded by its creator, the {creator}", field="funding_party"
            )
    if actor.kind == "merchant":
        assert actor.merchant_id is not None
        if not r.merchant_ids:
            r = rules.StockRules(**{**_fields(r), "merchant_ids": (actor.merchant_id,)})
        rules.check_merchant_may_define(r, actor.merchant_id)
    budget_minor = rules.validate_definition(r, budget_count=draft.budget_count, budget_minor=draft.budget_minor)
    if draft.valid_until is None and draft.valid_days_after_claim is None:
        raise Problem(INVALID_STOCK, "give valid_until or valid_days_after_claim", field="valid_until")
    if draft.valid_from and draft.valid_until and draft.valid_from >= draft.valid_until:
        raise Problem(INVALID_STOCK, "valid_from must be before valid_until", field="valid_from")
    return await store.insert_stock(
        tx.conn,
        {
            **_fields(r),
            "merchant_ids": list(r.merchant_ids),
            "store_ids": list(r.store_ids),
            "scenes": list(r.scenes),
            "payment_methods": list(r.payment_methods),
            "stock_id": new_id("cps"),
            "campaign_id": draft.campaign_id,
            "owner_merchant_id": campaign["owner_merchant_id"],
            "name": draft.name,
            "status": "draft",
            "face_value_minor": r.face_value_minor,
            "valid_from": draft.valid_from,
            "valid_until": draft.valid_until,
            "valid_days_after_claim": draft.valid_days_after_claim,
            "refund_policy": draft.refund_policy,
            "budget_count": draft.budget_count,
            "budget_minor": budget_minor,
            "remaining_count": draft.budget_count,
            "remaining_budget_minor": budget_minor,
            "per_user_limit": draft.per_user_limit,
            "per_user_daily_limit": draft.per_user_daily_limit,
            "daily_count_limit": draft.daily_count_limit,
            "points_price": draft.points_price,
            "channel": draft.channel,
        },
    )


def _fields(r: rules.StockRules) -> dict[str, Any]:
    return {name: getattr(r, name) for name in r.__slots__}


async def transition(tx: Tx, actor: Actor, stock_id: str, name: rules.Transition) -> RowMapping:
    """Apply a named transition as a compare-and-set on the status read; a concurrent change makes the CAS
    miss, and the transition is judged again on the status that won."""
    for _ in range(3):
        stock = await store.get_stock(tx.conn, stock_id, actor.owner_scope)
        if stock is None:
            raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
        target = rules.transition_target(name, stock["status"])
        changed = await store.change_status(tx.conn, stock_id, stock["status"], target)
        if changed is not None:
            return changed
    raise Problem(INVALID_STOCK_TRANSITION, "the stock kept changing; try again")


async def set_budget(tx: Tx, actor: Actor, stock_id: str, *, budget_count: int, budget_minor: int) -> RowMapping:
    """Raise (or lower, down to what is issued) a stock's budget, by target totals: idempotent by nature."""
    stock = await store.get_stock(tx.conn, stock_id, actor.owner_scope)
    if stock is None:
        raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
    if budget_minor < stock["face_value_minor"]:
        raise Problem(INVALID_STOCK, "budget_minor cannot pay for even one coupon", field="budget_minor")
    if stock["channel"] is not None:  # the channel's own count was fixed when it was created there
        raise Problem(INVALID_STOCK, "a channel stock's budget is the one created at the channel", field="budget_count")
    changed = await store.set_budget(tx.conn, stock_id, budget_count=budget_count, budget_minor=budget_minor)
    if changed is not None:
        return changed
    latest = await store.get_stock(tx.conn, stock_id)
    assert latest is not None
    if latest["status"] == "ended":
        raise Problem(INVALID_STOCK_TRANSITION, "an ended stock's budget cannot change", status="ended")
    raise Problem(
        BUDGET_BELOW_ISSUED,
        "the budget cannot go below what is already issued",
        issued_count=latest["budget_count"] - latest["remaining_count"],
        issued_minor=latest["budget_minor"] - latest["remaining_budget_minor"],
    )
