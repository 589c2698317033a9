"""Points: rules that grant points on `payment.succeeded` (consumed from `cashier.payments`) and take them
back proportionally on `refund.succeeded` (`cashier.refunds`). Marketing decides; the ledger keeps the
balance in the user's points sub-account from the instructions published on `marketing.points`.

Order-independent (docs/consistency.md): a refund seen before its payment is stored as a fact; whichever event comes
second computes the reversal from every stored fact, so the final state is the same in any order. Each
payment earns at most once (primary key), each refund counts once (primary key), and a daily cap is
taken under the counter row's lock.

Each earning is a lot with an expiry (`expiry_days` of its rule after the payment): exchanges for coupons
consume lots first-to-expire first (FIFO), and the expiry sweep expires what is left of a lot past its time;
both publish instructions (`points.exchanged`, `points.expired`) the ledger posts to the points sub-account.
A reversal takes at most what is left of its lot (domain `reversal_taken`), so a refund, an exchange and the
expiry of one lot take the same points out of the user in any order, and never more than the lot granted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.events import Envelope
from libs.common.ids import new_id
from services.marketing.domain import points as rules
from services.marketing.domain.actors import Actor
from services.marketing.domain.errors import POINTS_INSUFFICIENT, POINTS_NOT_EXCHANGEABLE, STOCK_NOT_FOUND
from services.marketing.events import (
    POINTS_EARNED,
    POINTS_EXCHANGED,
    POINTS_EXPIRED,
    POINTS_REVERSED,
    POINTS_TOPIC,
)
from services.marketing.flows import claims
from services.marketing.store import coupons as coupon_store
from services.marketing.store import stocks as stock_store
from services.marketing.store.tables import (
    points_daily,
    points_earnings,
    points_exchanges,
    points_refunds,
    points_rules,
)


async def create_rule(tx: Tx, actor: Actor, values: dict[str, Any]) -> RowMapping:
    row = {**values, "rule_id": new_id("ptr"), "owner_merchant_id": actor.owner_scope, "status": "active"}
    return (await tx.conn.execute(insert(points_rules).values(**row).returning(points_rules))).mappings().one()


async def end_rule(tx: Tx, actor: Actor, rule_id: str) -> RowMapping | None:
    """active → ended (a repeat returns the ended rule); None if the actor has no such rule."""
    query = update(points_rules).where(points_rules.c.rule_id == rule_id, points_rules.c.status == "active")
    if actor.owner_scope is not None:
        query = query.where(points_rules.c.owner_merchant_id == actor.owner_scope)
    ended = (await tx.conn.execute(query.values(status="ended").returning(points_rules))).mappings().first()
    return ended or await get_rule(tx.conn, actor, rule_id)


async def get_rule(conn: AsyncConnection, actor: Actor, rule_id: str) -> RowMapping | None:
    query = select(points_rules).where(points_rules.c.rule_id == rule_id)
    if actor.owner_scope is not None:
        query = query.where(points_rules.c.owner_merchant_id == actor.owner_scope)
    return (await conn.execute(query)).mappings().first()


async def _matching_rule(tx: Tx, merchant_id: str, currency: str) -> RowMapping | None:
    """The merchant's own active rule first, else the newest platform-wide one."""
    r = points_rules.c
    query = (
        select(points_rules)
        .where(r.status == "active", r.currency == currency, (r.merchant_id == merchant_id) | r.merchant_id.is_(None))
        .order_by(r.merchant_id.is_(None), r.rule_id.desc())
        .limit(1)
    )
    return (await tx.conn.execute(query)).mappings().first()


async def _take_daily(tx: Tx, rule: RowMapping, user_id: str, day: str, points: int) -> int:
    key = {"rule_id": rule["rule_id"], "user_id": user_id, "day": day}
    await tx.conn.execute(insert(points_daily).values(**key, earned_points=0).on_conflict_do_nothing())
    d = points_daily.c
    where = (d.rule_id == key["rule_id"], d.user_id == user_id, d.day == day)
    earned = (await tx.conn.execute(select(d.earned_points).where(*where).with_for_update())).scalar_one()
    granted = rules.within_daily_cap(points, earned_today=earned, user_daily_points_max=rule["user_daily_points_max"])
    if granted:
        await tx.conn.execute(update(points_daily).where(*where).values(earned_points=d.earned_points + granted))
    return granted


async def on_payment_event(tx: Tx, event: Envelope, *, day_timezone: str) -> None:
    """`payment.succeeded` of a known payer (`payer_user_id`) for a purchase: grant points by the rule."""
    data = event.data
    user_id = data.get("payer_user_id")
    if event.type != "payment.succeeded" or not user_id or data.get("purpose", "payment") != "payment":
        return
    rule = await _matching_rule(tx, data["merchant_id"], data["currency"])
    if rule is None:
        return
    raw = rules.points_for(
        data["amount_minor"],
        unit_minor=rule["unit_minor"],
        points_per_unit=rule["points_per_unit"],
        payment_points_max=rule["payment_points_max"],
    )
    at = datetime.fromisoformat(str(data.get("succeeded_at") or event.time))
    day = at.astimezone(ZoneInfo(day_timezone)).date().isoformat()
    expires_at = at + timedelta(days=rule["expiry_days"]) if rule["expiry_days"] else None
    earning = {
        "payment_id": data["payment_id"],
        "rule_id": rule["rule_id"],
        "user_id": user_id,
        "merchant_id": data["merchant_id"],
        "currency": data["currency"],
        "amount_minor": data["amount_minor"],
        "points": 0,
        "expires_at": expires_at,
    }
    statement = (
        insert(points_earnings).values(**earning).on_conflict_do_nothing().returning(points_earnings.c.payment_id)
    )
    if (await tx.conn.execute(statement)).first() is None:
        return  # this payment already earned
    points = await _take_daily(tx, rule, user_id, day, raw) if raw else 0
    await tx.conn.execute(
        update(points_earnings).where(points_earnings.c.payment_id == data["payment_id"]).values(points=points)
    )
    if points:
        tx.publish(
            topic=POINTS_TOPIC,
            type=POINTS_EARNED,
            subject=data["payment_id"],
            data={
                "payment_id": data["payment_id"],
                "user_id": user_id,
                "merchant_id": data["merchant_id"],
                "rule_id": rule["rule_id"],
                "points": points,
                "amount_minor": data["amount_minor"],
                "currency": data["currency"],
            },
        )
    await _reverse(tx, data["payment_id"])


async def on_refund_event(tx: Tx, event: Envelope) -> None:
    """`refund.succeeded`: record the refund once, then take back the points it accounts for."""
    data = event.data
    if event.type != "refund.succeeded":
        return
    fact = {"refund_id": data["refund_id"], "payment_id": data["payment_id"], "amount_minor": data["amount_minor"]}
    if (
        await tx.conn.execute(
            insert(points_refunds).values(**fact).on_conflict_do_nothing().returning(points_refunds.c.refund_id)
        )
    ).first() is None:
        return
    await _reverse(tx, data["payment_id"])


async def _reverse(tx: Tx, payment_id: str) -> None:
    """Bring the payment's reversed points up to what all refunds seen so far account for."""
    e = points_earnings.c
    earning = (
        (await tx.conn.execute(select(points_earnings).where(e.payment_id == payment_id).with_for_update()))
        .mappings()
        .first()
    )
    if earning is None or not earning["points"]:
        return  # no payment yet (its event will apply these refunds) or nothing was earned
    refunded = (
        await tx.conn.execute(
            select(func.coalesce(func.sum(points_refunds.c.amount_minor), 0)).where(
                points_refunds.c.payment_id == payment_id
            )
        )
    ).scalar_one()
    target = rules.reversed_after(earning["points"], amount_minor=earning["amount_minor"], refunded_minor=int(refunded))
    if target <= earning["reversed_points"]:
        return
    await tx.conn.execute(update(points_earnings).where(e.payment_id == payment_id).values(reversed_points=target))
    delta = rules.reversal_taken(
        earning["points"],
        reversed_before=earning["reversed_points"],
        reversed_after=target,
        consumed_points=earning["consumed_points"],
        expired_points=earning["expired_points"],
    )
    if delta <= 0:
        return  # the lot's points were exchanged or expired already
    tx.publish(
        topic=POINTS_TOPIC,
        type=POINTS_REVERSED,
        subject=payment_id,
        data={
            "payment_id": payment_id,
            "user_id": earning["user_id"],
            "merchant_id": earning["merchant_id"],
            "rule_id": earning["rule_id"],
            "points": delta,
            "reversed_points_total": target,
            "refunded_minor_total": int(refunded),
            "currency": earning["currency"],
        },
    )


def _left() -> Any:
    """SQL: what is left of a lot (domain `remaining`)."""
    e = points_earnings.c
    return func.greatest(0, e.points - e.reversed_points - e.consumed_points - e.expired_points)


async def exchange(
    tx: Tx, *, user_id: str, stock_id: str, request_id: str, now: datetime, day_timezone: str
) -> tuple[RowMapping, RowMapping, bool]:
    """Points for one coupon of a stock that offers them (`points_price`): (exchange, coupon, created).

    One transaction: the user's unexpired lots are locked (FOR UPDATE, oldest-to-expire first), checked to
    hold the price, the coupon is claimed by the ordinary claim (budget and per-user limits exact), and the
    lots are consumed FIFO. Any refusal rolls it all back. The same (user, request_id) replays the first
    exchange; with another stock → `idempotency_key_reused`."""
    earlier = await _exchange_of(tx, user_id, request_id)
    if earlier is not None:
        return await _replay_exchange(tx, earlier, stock_id)
    stock = await stock_store.get_stock(tx.conn, stock_id)
    if stock is None:
        raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
    price = stock["points_price"]
    if price is None:
        raise Problem(POINTS_NOT_EXCHANGEABLE, "this stock's coupons are not offered for points")
    e = points_earnings.c
    lots = (
        await tx.conn.execute(
            select(e.payment_id, _left().label("left"))
            .where(e.user_id == user_id, _left() > 0, e.expires_at.is_(None) | (e.expires_at > now))
            .order_by(e.expires_at.asc().nulls_last(), e.created_at, e.payment_id)
            .with_for_update()
        )
    ).all()
    # A twin of this request in flight held these locks until it committed: its exchange is visible now (each
    # statement reads what was committed before it), and is the answer, not `points_insufficient`.
    twin = await _exchange_of(tx, user_id, request_id)
    if twin is not None:
        return await _replay_exchange(tx, twin, stock_id)
    available = sum(int(lot.left) for lot in lots)
    if available < price:
        raise Problem(
            POINTS_INSUFFICIENT, f"{available} unexpired points, {price} needed", available=available, needed=price
        )
    coupon, created = await claims.claim(
        tx,
        stock_id=stock_id,
        user_id=user_id,
        request_id=f"points/{request_id}",
        source="points",
        now=now,
        day_timezone=day_timezone,
    )
    if not created:  # a concurrent twin of this request claimed it first: replay its exchange
        x = points_exchanges.c
        claimed = (
            (await tx.conn.execute(select(points_exchanges).where(x.coupon_id == coupon["coupon_id"]))).mappings().one()
        )
        return await _replay_exchange(tx, claimed, stock_id)
    taken = rules.consume_fifo([(lot.payment_id, int(lot.left)) for lot in lots], price)
    for payment_id, points in taken:
        await tx.conn.execute(
            update(points_earnings).where(e.payment_id == payment_id).values(consumed_points=e.consumed_points + points)
        )
    row = (
        (
            await tx.conn.execute(
                insert(points_exchanges)
                .values(
                    exchange_id=new_id("pxc"),
                    user_id=user_id,
                    request_id=request_id,
                    stock_id=stock_id,
                    coupon_id=coupon["coupon_id"],
                    points=price,
                    created_at=now,
                )
                .returning(points_exchanges)
            )
        )
        .mappings()
        .one()
    )
    tx.publish(
        topic=POINTS_TOPIC,
        type=POINTS_EXCHANGED,
        subject=row["exchange_id"],
        data={
            "exchange_id": row["exchange_id"],
            "user_id": user_id,
            "points": price,
            "stock_id": stock_id,
            "coupon_id": coupon["coupon_id"],
            "lots": [{"payment_id": lot, "points": n} for lot, n in taken],
        },
    )
    return row, coupon, True


async def _exchange_of(tx: Tx, user_id: str, request_id: str) -> RowMapping | None:
    x = points_exchanges.c
    query = select(points_exchanges).where(x.user_id == user_id, x.request_id == request_id)
    return (await tx.conn.execute(query)).mappings().first()


async def _replay_exchange(tx: Tx, earlier: RowMapping, stock_id: str) -> tuple[RowMapping, RowMapping, bool]:
    if earlier["stock_id"] != stock_id:
        raise Problem(IDEMPOTENCY_KEY_REUSED, "this request_id already exchanged points for another stock")
    coupon = await coupon_store.get_coupon(tx.conn, earlier["coupon_id"])
    assert coupon is not None
    return earlier, coupon, False


async def expire_round(tx: Tx, *, now: datetime, batch_max: int) -> int:
    """Expire what is left of lots past `expires_at` (SKIP LOCKED: replicas share the sweep; an exchange
    holding a lot's lock is waited for next round). Each expiry is one `points.expired` instruction keyed
    by the payment, so it follows the lot's grant and reversals. Returns how many lots expired."""
    e = points_earnings.c
    due = (
        (
            await tx.conn.execute(
                select(points_earnings)
                .where(e.expires_at <= now, e.expired_points == 0, _left() > 0)
                .order_by(e.expires_at)
                .limit(batch_max)
                .with_for_update(skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    for lot in due:
        left = rules.remaining(
            lot["points"],
            reversed_points=lot["reversed_points"],
            consumed_points=lot["consumed_points"],
            expired_points=lot["expired_points"],
        )
        await tx.conn.execute(
            update(points_earnings).where(e.payment_id == lot["payment_id"]).values(expired_points=left)
        )
        tx.publish(
            topic=POINTS_TOPIC,
            type=POINTS_EXPIRED,
            subject=lot["payment_id"],
            data={
                "payment_id": lot["payment_id"],
                "user_id": lot["user_id"],
                "merchant_id": lot["merchant_id"],
                "rule_id": lot["rule_id"],
                "points": left,
                "expires_at": lot["expires_at"].isoformat(),
            },
        )
    return len(due)
