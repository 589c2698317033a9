"""The daily comparison of marketing's view of its channel stocks with the channel's (`GET
/v1/marketing/channel-comparisons?date=`).

For one day (the service's calendar, `day_timezone`) it takes every channel stock created at its channel by the
day's end and not stopped before the day began, asks the channel (through the cashier) for the stock and compares:

- `budget_differs`: the channel's number of coupons (`max_coupons` / `quantity`) or face value is not ours;
- `sent_count_differs`: the channel has sent another number of coupons than we recorded as sent;
- `used_count_differs` (Alipay, whose activity query counts uses): another number of uses than we know;
- `used_at_channel_not_here` / `used_here_not_at_channel` (WeChat, which answers per coupon): a coupon sent by the
  day's end whose state differs — typically a `COUPON.USE` that never reached us.

It reads only (nothing is repaired: a mismatch is for an operator to look at; a lost callback's use is also found
by the payment's own `channel_discount`). At most `channel_comparison_coupons_max` coupons are asked about
(beyond: `complete: false`); a stock the channel could not answer for is listed with its error, `complete: false`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from services.marketing.clients.cashier import CashierClient
from services.marketing.store.tables import channel_coupons, channel_stocks, coupon_stocks, coupons


def _mismatch(kind: str, stock: Any, **detail: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "stock_id": stock["stock_id"],
        "program": stock["program"],
        "channel_stock_id": stock["channel_stock_id"],
        **detail,
    }


async def compare(
    uow: UnitOfWork, cashier: CashierClient, *, day: date, day_timezone: str, owner: str | None, coupons_max: int
) -> dict[str, Any]:
    zone = ZoneInfo(day_timezone)
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = start + timedelta(days=1)
    s, c = channel_stocks.c, channel_coupons.c
    async with uow.read() as conn:
        query = (
            select(channel_stocks, coupon_stocks.c.budget_count, coupon_stocks.c.face_value_minor)
            .join(coupon_stocks, coupon_stocks.c.stock_id == s.stock_id)
            .where(
                s.channel_stock_id.is_not(None),
                s.created_at < end,
                or_(s.channel_status != "stopped", s.updated_at >= start),
            )
            .order_by(s.stock_id)
        )
        if owner is not None:
            query = query.where(coupon_stocks.c.owner_merchant_id == owner)
        stocks = (await conn.execute(query)).mappings().all()
        ours: dict[str, dict[str, int]] = {}
        for stock in stocks:
            counts = (
                await conn.execute(
                    select(
                        func.count().filter(c.send_status == "sent"), func.count().filter(coupons.c.status == "used")
                    )
                    .join(coupons, coupons.c.coupon_id == c.coupon_id)
                    .where(c.stock_id == stock["stock_id"])
                )
            ).one()
            ours[stock["stock_id"]] = {"sent_count": int(counts[0]), "used_count": int(counts[1])}
    mismatches: list[dict[str, Any]] = []
    compared: list[dict[str, Any]] = []
    complete = True
    asked = 0
    for stock in stocks:
        entry: dict[str, Any] = {
            "stock_id": stock["stock_id"],
            "program": stock["program"],
            "channel_stock_id": stock["channel_stock_id"],
            "ours": ours[stock["stock_id"]],
        }
        compared.append(entry)
        try:
            theirs = await cashier.query_stock(
                stock["program"], stock["channel_stock_id"], merchant_id=stock["merchant_id"]
            )
        except Problem as failed:
            entry["error"] = {"code": failed.spec.code, "detail": str(failed)}
            complete = False
            continue
        entry["channel"] = {
            k: theirs.get(k) for k in ("status", "amount_minor", "max_coupons", "sent_count", "used_count")
        }
        mine = ours[stock["stock_id"]]
        if (theirs.get("max_coupons"), theirs.get("amount_minor")) != (
            stock["budget_count"],
            stock["face_value_minor"],
        ):
            mismatches.append(
                _mismatch(
                    "budget_differs",
                    stock,
                    ours={"max_coupons": stock["budget_count"], "amount_minor": stock["face_value_minor"]},
                    channel={"max_coupons": theirs.get("max_coupons"), "amount_minor": theirs.get("amount_minor")},
                )
            )
        if theirs.get("sent_count") is not None and theirs["sent_count"] != mine["sent_count"]:
            mismatches.append(
                _mismatch("sent_count_differs", stock, ours=mine["sent_count"], channel=theirs["sent_count"])
            )
        if theirs.get("used_count") is not None and theirs["used_count"] != mine["used_count"]:
            mismatches.append(
                _mismatch("used_count_differs", stock, ours=mine["used_count"], channel=theirs["used_count"])
            )
        if stock["program"] != "wechatpay_favor":
            continue
        async with uow.read() as conn:
            sent = (
                (
                    await conn.execute(
                        select(c.coupon_id, c.channel_coupon_id, c.channel_user, coupons.c.status)
                        .join(coupons, coupons.c.coupon_id == c.coupon_id)
                        .where(c.stock_id == stock["stock_id"], c.send_status == "sent", c.created_at < end)
                        .order_by(c.coupon_id)
                    )
                )
                .mappings()
                .all()
            )
        for coupon in sent:
            if asked >= coupons_max:
                complete = False
                break
            asked += 1
            try:
                at_channel = await cashier.query_coupon(
                    stock["program"],
                    coupon["channel_coupon_id"],
                    merchant_id=stock["merchant_id"],
                    user=coupon["channel_user"],
                )
            except Problem as failed:
                entry.setdefault("coupon_errors", []).append(
                    {"coupon_id": coupon["coupon_id"], "code": failed.spec.code}
                )
                complete = False
                continue
            used_there, used_here = at_channel.get("status") == "used", coupon["status"] == "used"
            if used_there != used_here:
                kind = "used_at_channel_not_here" if used_there else "used_here_not_at_channel"
                mismatches.append(
                    _mismatch(
                        kind,
                        stock,
                        coupon_id=coupon["coupon_id"],
                        channel_coupon_id=coupon["channel_coupon_id"],
                        transaction_id=at_channel.get("transaction_id"),
                    )
                )
    return {
        "date": day.isoformat(),
        "compared_at": datetime.now(zone).isoformat(),
        "complete": complete,
        "stocks": compared,
        "mismatches": mismatches,
    }
