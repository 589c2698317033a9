"""Channel stocks: a marketing stock with a `channel` is mirrored at that channel (docs/marketing.md "Channel coupons").

Programmes: `wechatpay_favor` (WeChat Pay 代金券) and `alipay_voucher` (Alipay 商家券 2.0). The stock's creator at
the channel is the channel account of the campaign's owner: a merchant's campaign is created with the merchant's
own WeChat mchid / Alipay app (its coupons are merchant-funded at the channel), the platform's own campaign with
the platform's account (`channel_account_merchant_id`, a cashier merchant holding the platform's credentials).

Starting a channel stock creates it at the channel first, then starts it there, then makes it `running` here:

1. in one transaction, the channel stock row is prepared once with the whole create request fixed (its times
   too) and `out_request_no` = the stock id;
2. the cashier creates the stock at the channel with that request. A crash after the channel's answer and before
   our commit is harmless: the next start sends the same request again and the channel's idempotency
   (`out_request_no` / `out_biz_no` with the same parameters) answers the same stock, which is stored then;
3. WeChat: `start` at the channel (repeatable); Alipay's activity is usable from its creation;
4. the stock's own transition (`draft → running`) commits.

Pause / resume / end go to the channel first (WeChat pause / restart / stop; Alipay has no pause, so a paused
stock here simply stops sending, and `end` stops the activity), then change here. A channel refusal changes
nothing here (422 `channel_refused`), an outage neither (503 `channel_unavailable`); the call can be repeated.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from services.marketing.clients.cashier import CashierClient
from services.marketing.domain import rules
from services.marketing.domain.actors import Actor
from services.marketing.domain.errors import INVALID_STOCK, STOCK_NOT_FOUND
from services.marketing.flows import stocks
from services.marketing.store import stocks as stock_store
from services.marketing.store.tables import channel_stocks

PROGRAMS = ("wechatpay_favor", "alipay_voucher")
WECHAT_WINDOW_DAYS_MAX = 90  # a 代金券 stock's window (sandboxes/wechatpay/README.md)
COUPONS_PER_USER_MAX = 100  # WeChat's max_coupons_per_user
AVAILABLE_MERCHANTS_MAX = 50  # the merchants a stock is usable at (the cashier's internal API takes 50)
CHANNEL_ACTIONS = {"pause": "pause", "resume": "restart", "end": "stop"}
CHANNEL_STATUS = {"start": "running", "pause": "paused", "resume": "running", "end": "stopped"}


def check_definition(draft: stocks.StockDraft, *, now: datetime) -> None:
    """What both channels can mirror exactly: a fixed amount off with a threshold above it (满减), the stock's own
    window for every coupon (the channels date coupons by the stock), the budget in fen = face value × count (the
    channel's `max_amount`), a per-user limit the channel accepts; points exchange has no channel user."""
    r = draft.terms

    def bad(field: str, detail: str) -> Problem:
        return Problem(INVALID_STOCK, f"a channel stock: {detail}", field=field)

    if r.discount_kind != "fixed" or r.amount_off_minor is None:
        raise bad("discount_kind", "the channels mirror a fixed amount off only")
    if r.threshold_minor <= r.amount_off_minor:
        raise bad("threshold_minor", "the order threshold must exceed the amount off (the channels' rule)")
    if draft.valid_until is None or draft.valid_days_after_claim is not None:
        raise bad("valid_until", "give valid_until (the channel dates every coupon by the stock's window)")
    if draft.budget_minor is not None and draft.budget_minor != r.amount_off_minor * draft.budget_count:
        raise bad("budget_minor", "the budget in fen is the face value × the count at the channel")
    if draft.per_user_limit > COUPONS_PER_USER_MAX:
        raise bad("per_user_limit", f"at most {COUPONS_PER_USER_MAX} per user at the channel")
    if len(r.merchant_ids) > AVAILABLE_MERCHANTS_MAX:
        raise bad("merchant_ids", f"a channel stock is usable at {AVAILABLE_MERCHANTS_MAX} merchants at most")
    if draft.points_price is not None:
        raise bad("points_price", "a channel coupon goes to a channel user, not bought with points")
    begin = max(draft.valid_from or now, now)
    if draft.valid_until - begin > timedelta(days=WECHAT_WINDOW_DAYS_MAX):
        raise bad("valid_until", f"a channel stock's window is at most {WECHAT_WINDOW_DAYS_MAX} days")


async def get(conn: AsyncConnection, stock_id: str) -> RowMapping | None:
    return (await conn.execute(select(channel_stocks).where(channel_stocks.c.stock_id == stock_id))).mappings().first()


def _request(stock: RowMapping, merchant_id: str, now: datetime) -> dict[str, Any]:
    """The cashier's create request, fixed once (so a retry is the same request at the channel)."""
    begin = max(stock["valid_from"] or now, now).replace(microsecond=0)
    return {
        "program": stock["channel"],
        "merchant_id": merchant_id,
        "out_request_no": stock["stock_id"],
        "name": stock["name"],
        "amount_minor": stock["amount_off_minor"],
        "threshold_minor": stock["threshold_minor"],
        "max_coupons": stock["budget_count"],
        "max_per_user": stock["per_user_limit"],
        "begin": begin.isoformat(),
        "end": stock["valid_until"].isoformat(),
        "usable_at_merchant_ids": list(stock["merchant_ids"]),
        "no_cash": stock["owner_merchant_id"] is not None,
    }


async def _prepared(
    uow: UnitOfWork, actor: Actor, stock_id: str, *, account_merchant_id: str | None, now: datetime
) -> tuple[RowMapping, RowMapping]:
    async with uow.begin() as tx:
        stock = await stock_store.get_stock(tx.conn, stock_id, actor.owner_scope)
        if stock is None:
            raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
        rules.transition_target("start", stock["status"])  # refused now (409) before anything reaches the channel
        merchant_id = stock["owner_merchant_id"] or account_merchant_id
        if merchant_id is None:
            raise Problem(
                INVALID_STOCK, "the platform has no channel account (channel_account_merchant_id)", field="channel"
            )
        values = {
            "stock_id": stock_id,
            "program": stock["channel"],
            "merchant_id": merchant_id,
            "out_request_no": stock_id,
            "request": _request(stock, merchant_id, now),
            "channel_status": "preparing",
        }
        await tx.conn.execute(insert(channel_stocks).values(**values).on_conflict_do_nothing())
        mirrored = await get(tx.conn, stock_id)
        assert mirrored is not None
        return stock, mirrored


async def _set(uow: UnitOfWork, stock_id: str, **values: Any) -> None:
    async with uow.begin() as tx:
        await tx.conn.execute(
            update(channel_stocks).where(channel_stocks.c.stock_id == stock_id).values(**values, updated_at=func.now())
        )


async def transition(
    uow: UnitOfWork,
    cashier: CashierClient,
    actor: Actor,
    stock_id: str,
    name: rules.Transition,
    *,
    account_merchant_id: str | None,
    now: datetime,
) -> RowMapping:
    """A channel stock's named transition: the channel first (idempotent there), then here (see the module)."""
    if name == "start":
        _, mirrored = await _prepared(uow, actor, stock_id, account_merchant_id=account_merchant_id, now=now)
        program, merchant_id = mirrored["program"], mirrored["merchant_id"]
        channel_stock_id = mirrored["channel_stock_id"]
        if channel_stock_id is None:
            channel_stock_id = await cashier.create_stock(dict(mirrored["request"]))
            await _set(uow, stock_id, channel_stock_id=channel_stock_id, channel_status="created")
        if program == "wechatpay_favor":
            await cashier.stock_action(
                program, channel_stock_id, "start", merchant_id=merchant_id, out_request_no=f"{stock_id}-start"
            )
    else:
        async with uow.read() as conn:
            stock = await stock_store.get_stock(conn, stock_id, actor.owner_scope)
            if stock is None:
                raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
            rules.transition_target(name, stock["status"])  # refused now (409) before the channel is asked
            found = await get(conn, stock_id)
        if found is not None and found["channel_stock_id"] is not None:
            await cashier.stock_action(
                found["program"],
                found["channel_stock_id"],
                CHANNEL_ACTIONS[name],
                merchant_id=found["merchant_id"],
                out_request_no=f"{stock_id}-{CHANNEL_ACTIONS[name]}",
            )
    async with uow.begin() as tx:
        row = await stocks.transition(tx, actor, stock_id, name)
        await tx.conn.execute(
            update(channel_stocks)
            .where(channel_stocks.c.stock_id == stock_id)
            .values(channel_status=CHANNEL_STATUS[name], updated_at=func.now())
        )
    return row
