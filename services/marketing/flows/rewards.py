"""Coupons issued as a reward on an event (issue 23: "issue as a reward on an event, e.g. first payment").

A reward rule (operators only) says: on a user's **first payment** — on the platform (`merchant_id` null, scope
`*`) or at one merchant (scope = that merchant) — issue one coupon of this stock. On `payment.succeeded` of a
purchase (`purpose = payment`) with a known payer (`payer_user_id`) in live mode, marketing inserts the payer's
first-payment row per scope (primary key (scope, user)); only the insert that creates the row issues the
running rules of that scope, each through the one claim path (flows/claims.py) with request id
`reward:<rule>`, so a user gets each rule's coupon exactly once whatever the order of its payments' events, their
redeliveries and the replicas handling them. A claim the stock refuses (exhausted, not running, over its
limits) is rolled back alone (a savepoint) and logged: the payment's other effects stand.

"First" is the first payment marketing has seen since this table exists: payments before it left no row, so a
user's next payment then counts as the first. A refund of the first payment does not take the coupon back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import Problem
from libs.common.events import Envelope
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.marketing.domain.errors import CHANNEL_USER_REQUIRED, REWARD_RULE_NOT_FOUND, STOCK_NOT_FOUND
from services.marketing.flows import claims
from services.marketing.store import stocks as stock_store

log = get_logger("juhe.marketing.rewards")

FIRST_PAYMENT = "first_payment"
PLATFORM_SCOPE = "*"


def scope_of(merchant_id: str | None) -> str:
    return merchant_id or PLATFORM_SCOPE


def rule_view(row: RowMapping) -> dict[str, Any]:
    scope = str(row["scope"])
    return {
        "rule_id": row["rule_id"],
        "event": row["event"],
        "merchant_id": None if scope == PLATFORM_SCOPE else scope,
        "stock_id": row["stock_id"],
        "status": row["status"],
        "issued_count": row["issued_count"],
        "created_at": row["created_at"],
    }


async def create_rule(tx: Tx, *, event: str, stock_id: str, merchant_id: str | None) -> RowMapping:
    """Running at once. The stock must be Juhe's own (a channel stock's coupon needs the user's channel id, which
    a payment event does not carry): unknown → 404 `stock_not_found`, a channel stock → 422."""
    stock = await stock_store.get_stock(tx.conn, stock_id)
    if stock is None:
        raise Problem(STOCK_NOT_FOUND, f"no stock {stock_id}")
    if stock["channel"] is not None:
        raise Problem(
            CHANNEL_USER_REQUIRED, "a reward is issued from Juhe's own stocks, not a channel's", field="stock_id"
        )
    sql = """INSERT INTO reward_rules (rule_id, event, scope, stock_id) VALUES (:r, :e, :s, :k) RETURNING *"""
    params = {"r": new_id("rwd"), "e": event, "s": scope_of(merchant_id), "k": stock_id}
    return (await tx.conn.execute(text(sql), params)).mappings().one()


async def end_rule(tx: Tx, rule_id: str) -> RowMapping:
    """Stops it (repeat: no-op): no later first payment earns its coupon; coupons issued stay the users'."""
    sql = """UPDATE reward_rules SET status = 'ended', updated_at = now() WHERE rule_id = :r RETURNING *"""
    row = (await tx.conn.execute(text(sql), {"r": rule_id})).mappings().first()
    if row is None:
        raise Problem(REWARD_RULE_NOT_FOUND, f"no reward rule {rule_id}")
    return row


async def list_rules(conn: AsyncConnection, *, before_id: str | None, limit: int) -> list[RowMapping]:
    sql = """SELECT * FROM reward_rules WHERE CAST(:b AS text) IS NULL OR rule_id < :b
              ORDER BY rule_id DESC LIMIT :n"""
    return list((await conn.execute(text(sql), {"b": before_id, "n": limit})).mappings().all())


async def on_payment_event(tx: Tx, event: Envelope, *, now: datetime, day_timezone: str) -> None:
    """A live purchase's success: the payer's first payment per scope issues the running first-payment rules."""
    data = event.data
    user_id, merchant_id = data.get("payer_user_id"), data.get("merchant_id")
    if (
        event.type != "payment.succeeded"
        or not user_id
        or data.get("purpose", "payment") != "payment"
        or data.get("livemode") is False
    ):
        return
    for scope in (PLATFORM_SCOPE, str(merchant_id)) if merchant_id else (PLATFORM_SCOPE,):
        first = """INSERT INTO reward_first_payments (scope, user_id, payment_id) VALUES (:s, :u, :p)
                   ON CONFLICT DO NOTHING RETURNING scope"""
        params = {"s": scope, "u": str(user_id), "p": str(data["payment_id"])}
        if (await tx.conn.execute(text(first), params)).first() is None:
            continue  # not this user's first payment in this scope (or a redelivery of it)
        running = """SELECT * FROM reward_rules WHERE event = :e AND scope = :s AND status = 'running'
                      ORDER BY rule_id"""
        for rule in (await tx.conn.execute(text(running), {"e": FIRST_PAYMENT, "s": scope})).mappings().all():
            await _issue(tx, rule, str(user_id), str(data["payment_id"]), now=now, day_timezone=day_timezone)


async def _issue(tx: Tx, rule: RowMapping, user_id: str, payment_id: str, *, now: datetime, day_timezone: str) -> None:
    try:
        async with tx.conn.begin_nested():
            _, created = await claims.claim(
                tx,
                stock_id=str(rule["stock_id"]),
                user_id=user_id,
                request_id=f"reward:{rule['rule_id']}",
                source="reward",
                now=now,
                day_timezone=day_timezone,
            )
            if created:
                sql = "UPDATE reward_rules SET issued_count = issued_count + 1 WHERE rule_id = :r"
                await tx.conn.execute(text(sql), {"r": rule["rule_id"]})
    except Problem as exc:
        log.warning(
            "first-payment reward not issued",
            rule_id=rule["rule_id"],
            user_id=user_id,
            payment_id=payment_id,
            code=exc.spec.code,
        )
