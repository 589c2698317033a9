"""Claiming coupons: a user's online claim and the bulk issue to a list, both through one `claim`.

One transaction per coupon: insert the coupon (its (user, request id) key makes a repeated request a
replay), count it against the per-user and per-day limits (conditional upserts), then take its count and
face value from the stock's budget (one conditional UPDATE). Any refusal raises, which rolls back every
step before it, so a refused claim changes nothing and a budget is never overspent."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from services.marketing.domain import rules
from services.marketing.domain.errors import (
    CHANNEL_USER_REQUIRED,
    CLAIM_LIMIT_REACHED,
    DAILY_LIMIT_REACHED,
    STOCK_EXHAUSTED,
    STOCK_NOT_FOUND,
    STOCK_NOT_RUNNING,
)
from services.marketing.events import COUPON_CLAIMED, COUPONS_TOPIC
from services.marketing.flows import channel_coupons
from services.marketing.flows.clock import Clock
from services.marketing.store import coupons as coupon_store
from services.marketing.store import stocks as stock_store
from services.marketing.store.tables import bulk_issue_items, bulk_issues

CODE_DIGITS = 16


def new_code() -> str:
    """The redemption code a user shows in store: 16 random digits (10^16 space: not guessable)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _replay(existing: RowMapping, stock_id: str) -> tuple[RowMapping, bool]:
    if existing["stock_id"] != stock_id:
        raise Problem(IDEMPOTENCY_KEY_REUSED, "this request_id already claimed a coupon of another stock")
    return existing, False


async def claim(
    tx: Tx,
    *,
    stock_id: str,
    user_id: str,
    request_id: str,
    source: str,
    now: datetime,
    day_timezone: str,
    channel_user: str | None = None,
) -> tuple[RowMapping, bool]:
    """(coupon, created). A repeated (user, request_id) for the same stock returns the first coupon. A channel
    stock's coupon is also recorded to be sent to `channel_user` at the channel (flows/channel_coupons.py)."""
    conn = tx.conn
    existing = await coupon_store.coupon_by_request(conn, user_id, request_id)
    if existing is not None:
        return _replay(existing, stock_id)
    stock = await stock_store.get_stock(conn, stock_id)
    if stock is None:
        raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
    if stock["channel"] is not None and not channel_user:
        raise Problem(
            CHANNEL_USER_REQUIRED,
            f"a {stock['channel']} coupon is sent to the user's id at the channel",
            field="channel_user",
        )
    if stock["status"] != "running":
        raise Problem(STOCK_NOT_RUNNING, f"the stock is {stock['status']}", status=stock["status"])
    if stock["valid_until"] is not None and now >= stock["valid_until"]:
        raise Problem(STOCK_NOT_RUNNING, "the stock's validity period is over", status=stock["status"])
    if stock["channel"] is not None and stock["valid_from"] is not None and now < stock["valid_from"]:
        # the channel sends nothing before its stock's window begins (WeChat 活动未开始): a claim now would be voided
        raise Problem(STOCK_NOT_RUNNING, "the channel stock's window has not begun", status=stock["status"])
    valid_from, valid_until = rules.validity(
        claimed_at=now,
        valid_from=stock["valid_from"],
        valid_until=stock["valid_until"],
        valid_days=stock["valid_days_after_claim"],
    )
    coupon = await coupon_store.insert_coupon(
        conn,
        {
            "coupon_id": new_id("cpn"),
            "stock_id": stock_id,
            "campaign_id": stock["campaign_id"],
            "user_id": user_id,
            "request_id": request_id,
            "source": source,
            "code": new_code(),
            "status": "available",
            "face_value_minor": stock["face_value_minor"],
            "currency": stock["currency"],
            "valid_from": valid_from,
            "valid_until": valid_until,
            "claimed_at": now,
        },
    )
    if coupon is None:  # the same request, committed concurrently: replay it
        again = await coupon_store.coupon_by_request(conn, user_id, request_id)
        assert again is not None
        return _replay(again, stock_id)
    day = now.astimezone(ZoneInfo(day_timezone)).date().isoformat()
    if not await stock_store.count_claim(conn, stock_id, user_id, stock_store.TOTAL_PERIOD, stock["per_user_limit"]):
        raise Problem(CLAIM_LIMIT_REACHED, f"at most {stock['per_user_limit']} per user", limit=stock["per_user_limit"])
    daily = stock["per_user_daily_limit"]
    if daily is not None and not await stock_store.count_claim(conn, stock_id, user_id, day, daily):
        raise Problem(CLAIM_LIMIT_REACHED, f"at most {daily} per user per day", limit=daily)
    quota = stock["daily_count_limit"]
    if quota is not None and not await stock_store.count_claim(conn, stock_id, stock_store.WHOLE_STOCK, day, quota):
        raise Problem(DAILY_LIMIT_REACHED, f"at most {quota} coupons a day", limit=quota)
    if await stock_store.reserve_one(conn, stock_id) is None:
        latest = await stock_store.get_stock(conn, stock_id)
        assert latest is not None
        if latest["status"] != "running":
            raise Problem(STOCK_NOT_RUNNING, f"the stock is {latest['status']}", status=latest["status"])
        raise Problem(STOCK_EXHAUSTED, "the stock's budget is used up")
    if stock["channel"] is not None:
        await channel_coupons.record_send(tx, stock, coupon, channel_user)
    tx.publish(
        topic=COUPONS_TOPIC,
        type=COUPON_CLAIMED,
        subject=coupon["coupon_id"],
        data={
            "coupon_id": coupon["coupon_id"],
            "stock_id": stock_id,
            "campaign_id": stock["campaign_id"],
            "user_id": user_id,
            "source": source,
            "face_value_minor": coupon["face_value_minor"],
            "currency": coupon["currency"],
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat(),
        },
    )
    return coupon, True


# --- bulk issue -------------------------------------------------------------------------------------------


async def create_bulk_issue(
    tx: Tx, *, stock_id: str, user_ids: list[str], request_id: str, requested_by: str
) -> tuple[RowMapping, bool]:
    """Record a bulk issue and its items (pending); the worker issues them in bounded rounds. The same
    (stock, request_id) returns the first job; with another list it is `idempotency_key_reused`."""
    values = {
        "bulk_issue_id": new_id("bis"),
        "stock_id": stock_id,
        "requested_by": requested_by,
        "request_id": request_id,
        "total_count": len(user_ids),
    }
    statement = insert(bulk_issues).values(**values).on_conflict_do_nothing(constraint="bulk_issues_request_key")
    job = (await tx.conn.execute(statement.returning(bulk_issues))).mappings().first()
    if job is None:
        job = (
            (
                await tx.conn.execute(
                    select(bulk_issues).where(
                        bulk_issues.c.stock_id == stock_id, bulk_issues.c.request_id == request_id
                    )
                )
            )
            .mappings()
            .one()
        )
        items = bulk_issue_items.c
        stored = (
            await tx.conn.execute(
                select(items.user_id).where(items.bulk_issue_id == job["bulk_issue_id"]).order_by(items.seq)
            )
        ).scalars()
        if list(stored) != user_ids:
            raise Problem(IDEMPOTENCY_KEY_REUSED, "this request_id was used with another list of users")
        return job, False
    rows = [
        {"bulk_issue_id": job["bulk_issue_id"], "seq": i, "user_id": u, "status": "pending"}
        for i, u in enumerate(user_ids)
    ]
    await tx.conn.execute(insert(bulk_issue_items), rows)
    return job, True


async def bulk_progress(conn: AsyncConnection, bulk_issue_id: str) -> dict[str, int]:
    query = (
        select(bulk_issue_items.c.status, func.count())
        .where(bulk_issue_items.c.bulk_issue_id == bulk_issue_id)
        .group_by(bulk_issue_items.c.status)
    )
    counts = {status: int(n) for status, n in (await conn.execute(query)).all()}
    return {s: counts.get(s, 0) for s in ("pending", "issued", "failed")}


async def bulk_issue_round(uow: UnitOfWork, *, batch_max: int, day_timezone: str, now: Clock) -> int:
    """Issue up to `batch_max` pending items, each in its own transaction with its claim (so a crash
    loses nothing and repeats nothing: the item's request id `bulk/<job>/<seq>` makes its claim idempotent;
    "/" is not allowed in a client's request_id, so no user can take that key first).
    Items are taken with SKIP LOCKED, so replicas share the work. Returns how many were handled."""
    done = 0
    for _ in range(batch_max):
        picked: tuple[str, int] | None = None
        try:
            async with uow.begin() as tx:
                item = (
                    (
                        await tx.conn.execute(
                            select(bulk_issue_items, bulk_issues.c.stock_id)
                            .join(bulk_issues, bulk_issues.c.bulk_issue_id == bulk_issue_items.c.bulk_issue_id)
                            .where(bulk_issue_items.c.status == "pending")
                            .order_by(bulk_issue_items.c.bulk_issue_id, bulk_issue_items.c.seq)
                            .limit(1)
                            .with_for_update(of=bulk_issue_items, skip_locked=True)
                        )
                    )
                    .mappings()
                    .first()
                )
                if item is None:
                    return done
                picked = (item["bulk_issue_id"], item["seq"])
                coupon, _ = await claim(
                    tx,
                    stock_id=item["stock_id"],
                    user_id=item["user_id"],
                    request_id=f"bulk/{picked[0]}/{picked[1]}",
                    source="bulk",
                    now=now(),
                    day_timezone=day_timezone,
                )
                await _finish_item(tx, picked, "issued", coupon_id=coupon["coupon_id"])
        except Problem as refused:
            if picked is None:
                raise
            async with uow.begin() as tx:
                await _finish_item(tx, picked, "failed", failure_code=refused.spec.code)
        done += 1
    return done


async def _finish_item(tx: Tx, key: tuple[str, int], status: str, **values: Any) -> None:
    c = bulk_issue_items.c
    await tx.conn.execute(
        update(bulk_issue_items)
        .where(c.bulk_issue_id == key[0], c.seq == key[1], c.status == "pending")
        .values(status=status, **values)
    )
