"""Redeeming coupons: online (lock for a payment → confirm | release | expire; refunds) and in store
(a merchant's staff redeems a code; undo within a window).

Every change of a coupon is a compare-and-set on its status, so two payments (or two tills) racing for one
coupon cannot both win; the loser is told `coupon_locked` / `coupon_used`. Each change publishes its event
on `marketing.coupons` in the same transaction; `coupon.used` carries the funding split the ledger posts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from services.marketing import events
from services.marketing.domain import rules
from services.marketing.domain.errors import (
    COUPON_LOCKED,
    COUPON_NOT_APPLICABLE,
    COUPON_NOT_FOUND,
    COUPON_USED,
    COUPON_VOIDED,
    LOCK_EXPIRED,
    REDEMPTION_NOT_FOUND,
    REDEMPTION_NOT_USED,
    REFUND_EXCEEDS_PAYMENT,
    UNDO_WINDOW_PASSED,
)
from services.marketing.store import coupons as store
from services.marketing.store import stocks as stock_store

USED_STATES = frozenset({"used", "refunded"})
# The most available coupons one applicability check looks at (a user rarely holds more).
COUPONS_SCANNED_MAX = 200


@dataclass(frozen=True, slots=True)
class LockRequest:
    payment_id: str
    coupon_id: str
    user_id: str
    context: rules.PaymentContext
    lock_seconds: int


def _publish(tx: Tx, event_type: str, r: RowMapping, **extra: Any) -> None:
    data = {
        "coupon_id": r["coupon_id"],
        "redemption_id": r["redemption_id"],
        "kind": r["kind"],
        "payment_id": r["payment_id"],
        "stock_id": r["stock_id"],
        "campaign_id": r["campaign_id"],
        "user_id": r["user_id"],
        "merchant_id": r["merchant_id"],
        "store_id": r["store_id"],
        "currency": r["currency"],
        **extra,
    }
    tx.publish(topic=events.COUPONS_TOPIC, type=event_type, subject=r["coupon_id"], data=data)


def used_payload(r: RowMapping) -> dict[str, Any]:
    """What the ledger needs to post a used coupon: the discount and who funds which part of it."""
    return {
        "order_amount_minor": r["order_amount_minor"],
        "discount_minor": r["discount_minor"],
        "payable_minor": r["payable_minor"],
        "funding": {
            "party": r["funding_party"],
            "platform_share_bps": r["platform_share_bps"],
            "platform_minor": r["platform_minor"],
            "merchant_minor": r["merchant_minor"],
        },
        "used_at": r["used_at"].isoformat() if r["used_at"] else None,
    }


async def _refusal_for(tx: Tx, coupon: RowMapping, now: datetime) -> RowMapping:
    """The coupon after expiring its lock if that lock is past its time; a coupon not available raises."""
    if coupon["status"] == "locked" and coupon["redemption_id"]:
        await expire_lock(tx, coupon["redemption_id"], now)
        refreshed = await store.get_coupon(tx.conn, coupon["coupon_id"])
        assert refreshed is not None
        coupon = refreshed
    if coupon["status"] == "used":
        raise Problem(COUPON_USED, "the coupon has already been used")
    if coupon["status"] == "voided":
        raise Problem(COUPON_VOIDED, "the coupon was voided by the reversal of its migration run")
    if coupon["status"] == "locked":
        holder = await store.get_redemption(tx.conn, coupon["redemption_id"]) if coupon["redemption_id"] else None
        # Who holds it, for the cashier only (it never relays these): a lock whose payment the cashier never
        # created (it died between the lock and its insert) is released by the cashier's retry.
        held = (
            {
                "lock_redemption_id": holder["redemption_id"],
                "lock_payment_id": holder["payment_id"],
                "locked_at": holder["created_at"].isoformat(),
            }
            if holder is not None
            else {}
        )
        raise Problem(COUPON_LOCKED, "the coupon is locked by another payment", **held)
    return coupon


async def _priced(tx: Tx, coupon: RowMapping, ctx: rules.PaymentContext, now: datetime) -> tuple[RowMapping, int]:
    rules.check_valid_at(now, coupon["valid_from"], coupon["valid_until"])
    stock = await stock_store.get_stock(tx.conn, coupon["stock_id"])
    assert stock is not None
    if stock["channel"] is not None:  # used at its channel by the payer; the channel reports the discount
        raise Problem(
            COUPON_NOT_APPLICABLE, "a channel coupon is used at its channel, not through Juhe", field="channel"
        )
    return stock, rules.discount_for(stock_store.rules_of(stock), ctx)


def _redemption_values(
    coupon: RowMapping, stock: RowMapping, ctx: rules.PaymentContext, discount: int, **values: Any
) -> dict[str, Any]:
    platform, merchant = rules.funding_split(discount, stock["platform_share_bps"])
    return {
        "coupon_id": coupon["coupon_id"],
        "stock_id": coupon["stock_id"],
        "campaign_id": coupon["campaign_id"],
        "user_id": coupon["user_id"],
        "merchant_id": ctx.merchant_id,
        "store_id": ctx.store_id,
        "currency": ctx.currency,
        "order_amount_minor": ctx.order_amount_minor,
        "discount_minor": discount,
        "payable_minor": ctx.order_amount_minor - discount,
        "funding_party": stock["funding_party"],
        "platform_share_bps": stock["platform_share_bps"],
        "platform_minor": platform,
        "merchant_minor": merchant,
        **values,
    }


def _same_lock(existing: RowMapping, req: LockRequest) -> RowMapping:
    if existing["coupon_id"] != req.coupon_id or existing["order_amount_minor"] != req.context.order_amount_minor:
        raise Problem(IDEMPOTENCY_KEY_REUSED, "this payment already locked another coupon or amount")
    return existing


async def lock(tx: Tx, req: LockRequest, now: datetime) -> tuple[RowMapping, bool]:
    """(redemption, created): lock the coupon for this payment at the discount marketing computes. A repeat
    for the same payment returns the first lock."""
    existing = await store.redemption_by_key(tx.conn, "online", req.payment_id)
    if existing is not None:
        return _same_lock(existing, req), False
    coupon = await store.get_coupon(tx.conn, req.coupon_id)
    if coupon is None or coupon["user_id"] != req.user_id:
        raise Problem(COUPON_NOT_FOUND, f"the user has no coupon {req.coupon_id}")
    coupon = await _refusal_for(tx, coupon, now)
    stock, discount = await _priced(tx, coupon, req.context, now)
    redemption_id = new_id("rdm")
    if await store.move_coupon(tx.conn, req.coupon_id, "available", "locked", redemption_id=redemption_id) is None:
        raced = await store.redemption_by_key(tx.conn, "online", req.payment_id)
        if raced is not None:  # the same payment's lock, committed while we waited for the row
            return _same_lock(raced, req), False
        latest = await store.get_coupon(tx.conn, req.coupon_id)
        assert latest is not None
        await _refusal_for(tx, latest, now)
        raise Problem(COUPON_LOCKED, "the coupon changed concurrently")
    locked_until = now + timedelta(seconds=req.lock_seconds)
    r = await store.insert_redemption(
        tx.conn,
        _redemption_values(
            coupon,
            stock,
            req.context,
            discount,
            redemption_id=redemption_id,
            kind="online",
            request_key=req.payment_id,
            payment_id=req.payment_id,
            status="locked",
            locked_until=locked_until,
        ),
    )
    _publish(
        tx,
        events.COUPON_LOCKED,
        r,
        order_amount_minor=r["order_amount_minor"],
        discount_minor=discount,
        payable_minor=r["payable_minor"],
        locked_until=locked_until.isoformat(),
    )
    return r, True


async def coupon_id_of_code(tx: Tx, code: str, user_id: str) -> str:
    """The coupon a user names by its code at checkout; another user's code is as unknown as a wrong one."""
    coupon = await store.coupon_by_code(tx.conn, code)
    if coupon is None or coupon["user_id"] != user_id:
        raise Problem(COUPON_NOT_FOUND, "the user has no coupon with this code")
    return str(coupon["coupon_id"])


async def _online(tx: Tx, redemption_id: str) -> RowMapping:
    r = await store.get_redemption(tx.conn, redemption_id, for_update=True)
    if r is None or r["kind"] != "online":
        raise Problem(REDEMPTION_NOT_FOUND, f"no redemption {redemption_id}")
    return r


async def confirm(tx: Tx, redemption_id: str, now: datetime) -> RowMapping:
    """The payment succeeded: the coupon is used. A repeat is a no-op. A success arriving after the lock
    was released (late success, expired lock) still uses the coupon if nobody took it since; else 409."""
    r = await _online(tx, redemption_id)
    if r["status"] in USED_STATES:
        return r
    old = r["status"]
    if old == "locked":
        moved = await store.move_coupon(
            tx.conn, r["coupon_id"], "locked", "used", redemption_id=redemption_id, expect_redemption=redemption_id
        )
    else:
        moved = await store.move_coupon(tx.conn, r["coupon_id"], "available", "used", redemption_id=redemption_id)
    if moved is None:
        raise Problem(LOCK_EXPIRED, "the lock was released and the coupon is no longer available")
    used = await store.move_redemption(
        tx.conn, redemption_id, old, "used", used_at=now, finished_at=None, release_reason=None
    )
    assert used is not None
    _publish(tx, events.COUPON_USED, used, **used_payload(used))
    return used


async def _release_locked(tx: Tx, r: RowMapping, status: str, reason: str, now: datetime) -> RowMapping:
    released = await store.move_redemption(
        tx.conn, r["redemption_id"], "locked", status, finished_at=now, release_reason=reason
    )
    if released is None:
        return r
    await store.move_coupon(
        tx.conn, r["coupon_id"], "locked", "available", redemption_id=None, expect_redemption=r["redemption_id"]
    )
    _publish(tx, events.COUPON_RELEASED, released, reason=reason)
    return released


async def release(tx: Tx, redemption_id: str, reason: str, now: datetime) -> RowMapping:
    """The payment failed or closed: the coupon is the user's again. A repeat is a no-op; a used one is 409."""
    r = await _online(tx, redemption_id)
    if r["status"] in USED_STATES:
        raise Problem(COUPON_USED, "the payment already used this coupon")
    if r["status"] != "locked":
        return r
    return await _release_locked(tx, r, "released", reason, now)


async def expire_lock(tx: Tx, redemption_id: str, now: datetime) -> bool:
    """Release a lock past its `locked_until` (status `expired`); False if it is not one (any more)."""
    r = await store.get_redemption(tx.conn, redemption_id, for_update=True)
    if r is None or r["status"] != "locked" or r["locked_until"] > now:
        return False
    await _release_locked(tx, r, "expired", "lock_expired", now)
    return True


async def refund(tx: Tx, redemption_id: str, *, refund_id: str, refund_minor: int) -> tuple[RowMapping, RowMapping]:
    """(redemption, refund): reverse the discount's funding in proportion to the amount refunded; on a
    full refund the coupon goes back to the user if the stock says so. Idempotent by `refund_id`."""
    r = await _online(tx, redemption_id)  # row lock: refunds of one redemption apply one at a time
    known = await store.get_refund(tx.conn, refund_id)
    if known is not None:
        if known["redemption_id"] != redemption_id or known["refund_amount_minor"] != refund_minor:
            raise Problem(IDEMPOTENCY_KEY_REUSED, "this refund_id was used with another redemption or amount")
        return r, known
    if r["status"] not in USED_STATES:
        raise Problem(REDEMPTION_NOT_USED, f"the redemption is {r['status']}", status=r["status"])
    if r["refunded_minor"] + refund_minor > r["payable_minor"]:
        raise Problem(
            REFUND_EXCEEDS_PAYMENT,
            "refunds would exceed the amount paid",
            refundable_minor=r["payable_minor"] - r["refunded_minor"],
        )
    platform, merchant = rules.refund_reversal(
        discount_minor=r["discount_minor"],
        platform_minor=r["platform_minor"],
        payable_minor=r["payable_minor"],
        refunded_before_minor=r["refunded_minor"],
        refund_minor=refund_minor,
    )
    full = r["refunded_minor"] + refund_minor == r["payable_minor"]
    stock = await stock_store.get_stock(tx.conn, r["stock_id"])
    assert stock is not None
    give_back = full and stock["refund_policy"] == "return_on_full_refund"
    updated = await store.add_refund_totals(
        tx.conn,
        redemption_id,
        refund_minor=refund_minor,
        platform_minor=platform,
        merchant_minor=merchant,
        status="refunded" if full else "used",
    )
    row = await store.insert_refund(
        tx.conn,
        {
            "refund_id": refund_id,
            "redemption_id": redemption_id,
            "refund_amount_minor": refund_minor,
            "platform_minor": platform,
            "merchant_minor": merchant,
            "coupon_returned": "yes" if give_back else "no",
        },
    )
    _publish(
        tx,
        events.COUPON_REFUNDED,
        updated,
        refund_id=refund_id,
        refund_amount_minor=refund_minor,
        reversed={"platform_minor": platform, "merchant_minor": merchant, "total_minor": platform + merchant},
        fully_refunded=full,
        coupon_returned=give_back,
    )
    if give_back:
        await store.move_coupon(
            tx.conn, r["coupon_id"], "used", "available", redemption_id=None, expect_redemption=redemption_id
        )
        _publish(tx, events.COUPON_RETURNED, updated, reason="full_refund", refund_id=refund_id)
    return updated, row


async def applicable(
    conn: AsyncConnection, *, user_id: str, ctx: rules.PaymentContext, now: datetime, limit: int
) -> list[tuple[RowMapping, int]]:
    """The user's available coupons that apply to this payment, with their discount, best first (what the
    checkout offers). Reads only; the choice is made by a lock."""
    offers: list[tuple[RowMapping, int]] = []
    terms: dict[str, rules.StockRules | None] = {}  # one read per stock, not per coupon
    for coupon in await store.available_coupons(conn, user_id, now, limit=COUPONS_SCANNED_MAX):
        if coupon["stock_id"] not in terms:
            stock = await stock_store.get_stock(conn, coupon["stock_id"])
            assert stock is not None
            terms[coupon["stock_id"]] = None if stock["channel"] else stock_store.rules_of(stock)
        stock_terms = terms[coupon["stock_id"]]
        if stock_terms is None:  # a channel coupon: offered by the channel's own checkout, not here
            continue
        try:
            offers.append((coupon, rules.discount_for(stock_terms, ctx)))
        except Problem:
            continue
    offers.sort(key=lambda offer: (-offer[1], offer[0]["valid_until"]))
    return offers[:limit]


# --- in store ---------------------------------------------------------------------------------------------


async def redeem_in_store(
    tx: Tx, *, code: str, request_id: str, ctx: rules.PaymentContext, now: datetime, dry_run: bool = False
) -> tuple[RowMapping | dict[str, Any], bool]:
    """(redemption, created): a merchant's staff redeems a coupon by its code. `dry_run` verifies only
    (the discount and funding it would give, nothing changed). Idempotent by (merchant, request_id)."""
    key = f"{ctx.merchant_id}:{request_id}"
    existing = None if dry_run else await store.redemption_by_key(tx.conn, "in_store", key)
    coupon = await store.coupon_by_code(tx.conn, code)
    if existing is not None:
        if coupon is None or existing["coupon_id"] != coupon["coupon_id"]:
            raise Problem(IDEMPOTENCY_KEY_REUSED, "this request_id already redeemed another coupon")
        return existing, False
    if coupon is None:
        raise Problem(COUPON_NOT_FOUND, "no coupon has this code")
    coupon = await _refusal_for(tx, coupon, now)
    stock, discount = await _priced(tx, coupon, ctx, now)
    values = _redemption_values(
        coupon,
        stock,
        ctx,
        discount,
        redemption_id=new_id("rdm"),
        kind="in_store",
        request_key=key,
        payment_id=None,
        status="used",
        used_at=now,
    )
    if dry_run:
        return {**values, "valid_until": coupon["valid_until"]}, False
    if (
        await store.move_coupon(
            tx.conn, coupon["coupon_id"], "available", "used", redemption_id=values["redemption_id"]
        )
        is None
    ):
        latest = await store.get_coupon(tx.conn, coupon["coupon_id"])
        assert latest is not None
        await _refusal_for(tx, latest, now)
        raise Problem(COUPON_USED, "the coupon changed concurrently")
    r = await store.insert_redemption(tx.conn, values)
    _publish(tx, events.COUPON_USED, r, **used_payload(r))
    return r, True


async def undo_in_store(
    tx: Tx, *, redemption_id: str, merchant_id: str, now: datetime, window_seconds: int
) -> RowMapping:
    """The redeeming merchant takes an in-store redemption back within the window: the coupon is
    available again and the funding is reversed whole (`coupon.redemption_undone`)."""
    r = await store.get_redemption(tx.conn, redemption_id, for_update=True)
    if r is None or r["kind"] != "in_store" or r["merchant_id"] != merchant_id:
        raise Problem(REDEMPTION_NOT_FOUND, f"no redemption {redemption_id}")
    if r["status"] == "undone":
        return r
    if now - r["used_at"] > timedelta(seconds=window_seconds):
        raise Problem(UNDO_WINDOW_PASSED, f"undo is possible for {window_seconds} s after redemption")
    undone = await store.move_redemption(
        tx.conn, redemption_id, "used", "undone", finished_at=now, release_reason="undone"
    )
    assert undone is not None
    await store.move_coupon(
        tx.conn, r["coupon_id"], "used", "available", redemption_id=None, expect_redemption=redemption_id
    )
    _publish(
        tx,
        events.COUPON_REDEMPTION_UNDONE,
        undone,
        reversed={
            "platform_minor": r["platform_minor"],
            "merchant_minor": r["merchant_minor"],
            "total_minor": r["discount_minor"],
        },
    )
    return undone
