"""Top-up promotions (充值送): on a paid wallet top-up (`payment.succeeded`, `purpose = wallet_topup`) the
platform gives the holder a bonus by the promotion's tiers, once; the ledger credits it to the holder's bonus
sub-account from the instruction published on `marketing.topups` (Dr 5201 marketing_expense → Cr 2308
user_bonus). A refund of that top-up revokes the bonus (the ledger takes back what is left of it).

Exactly once: the first statement for a top-up inserts its grant row (primary key = the payment id) with
`ON CONFLICT DO NOTHING`; a redelivery finds the row and does nothing. The budget is exact under concurrent
top-ups and across replicas for the same reason as claims' (README "Budget design"): a per-holder counter row
taken by one conditional upsert, then the budget by one conditional UPDATE re-evaluated under the row lock;
a refusal of either leaves the counter as it was (compensated in the same transaction).

Any order of events ends in the same ledger state: refunds are stored as facts (`points_refunds`, written by
flows/points.py in the same transaction for every refund), so a refund seen before its top-up makes the
top-up's grant `not_granted`, and one seen after revokes the bonus (both handlers first take a transaction
lock on the payment id, so a top-up and its refund handled at the same moment still see each other). A
revoked bonus does not return to the budget: part of it may have been spent by the holder, so the platform's
cost is not known here."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.ids import new_id
from services.marketing.domain.topups import Tier, bonus_for, in_window
from services.marketing.events import TOPUP_BONUS_EXPIRED, TOPUP_BONUS_GRANTED, TOPUP_BONUS_REVOKED, TOPUPS_TOPIC
from services.marketing.store.tables import (
    points_refunds,
    topup_bonus_grants,
    topup_promotion_holders,
    topup_promotions,
)

TOPUP_PURPOSE = "wallet_topup"


def tiers_of(promotion: RowMapping) -> list[Tier]:
    return [Tier(int(t["min_topup_minor"]), int(t["bonus_minor"])) for t in promotion["tiers"]]


async def create(tx: Tx, values: dict[str, Any]) -> RowMapping:
    """A promotion runs from its creation (within its validity window) until it is ended."""
    row = {
        **values,
        "promotion_id": new_id("tpp"),
        "status": "running",
        "remaining_budget_minor": values["budget_minor"],
    }
    statement = insert(topup_promotions).values(**row).returning(topup_promotions)
    return (await tx.conn.execute(statement)).mappings().one()


async def end(tx: Tx, promotion_id: str) -> RowMapping | None:
    """running → ended (a repeat returns the ended promotion); None if there is no such promotion. Grants
    already made stay; no top-up after this gets a bonus from it."""
    p = topup_promotions.c
    query = update(topup_promotions).where(p.promotion_id == promotion_id, p.status == "running")
    ended = (await tx.conn.execute(query.values(status="ended").returning(topup_promotions))).mappings().first()
    return ended or await get(tx.conn, promotion_id)


async def get(conn: AsyncConnection, promotion_id: str) -> RowMapping | None:
    query = select(topup_promotions).where(topup_promotions.c.promotion_id == promotion_id)
    return (await conn.execute(query)).mappings().first()


async def _serialise(tx: Tx, payment_id: str) -> None:
    """A top-up and a refund of it handled at the same moment (two partitions, two consumers) take this lock
    first: whichever comes second sees the other's committed row (the grant, or the refund fact), so neither a
    bonus nor its revocation is missed."""
    await tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"topup:{payment_id}"})


async def _refunded(tx: Tx, payment_id: str) -> bool:
    query = select(func.count()).select_from(points_refunds).where(points_refunds.c.payment_id == payment_id)
    return int((await tx.conn.execute(query)).scalar_one()) > 0


async def _take(tx: Tx, promotion: RowMapping, holder_id: str, bonus_minor: int) -> bool:
    """The holder's slot, then the budget; both or neither (the slot is given back if the budget refuses)."""
    h = topup_promotion_holders.c
    slot = (
        insert(topup_promotion_holders)
        .values(promotion_id=promotion["promotion_id"], holder_id=holder_id, granted_count=1)
        .on_conflict_do_update(
            index_elements=[h.promotion_id, h.holder_id],
            set_={"granted_count": h.granted_count + 1},
            where=h.granted_count < promotion["per_holder_limit"],
        )
        .returning(h.granted_count)
    )
    if (await tx.conn.execute(slot)).first() is None:
        return False
    p = topup_promotions.c
    budget = (
        update(topup_promotions)
        .where(
            p.promotion_id == promotion["promotion_id"], p.status == "running", p.remaining_budget_minor >= bonus_minor
        )
        .values(remaining_budget_minor=p.remaining_budget_minor - bonus_minor, granted_count=p.granted_count + 1)
        .returning(p.promotion_id)
    )
    if (await tx.conn.execute(budget)).first() is not None:
        return True
    await tx.conn.execute(
        update(topup_promotion_holders)
        .where(h.promotion_id == promotion["promotion_id"], h.holder_id == holder_id)
        .values(granted_count=h.granted_count - 1)
    )
    return False


async def on_payment_event(tx: Tx, event: Envelope, *, topup_merchant_id: str | None) -> None:
    """A paid top-up of the collecting merchant: the best bonus a running promotion still gives, once."""
    data = event.data
    holder_id = data.get("wallet_holder_id")
    if (
        event.type != "payment.succeeded"
        or data.get("purpose") != TOPUP_PURPOSE
        or not holder_id
        or topup_merchant_id is None
        or data.get("merchant_id") != topup_merchant_id
    ):
        return
    payment_id, currency, amount = str(data["payment_id"]), str(data["currency"]), int(data["amount_minor"])
    await _serialise(tx, payment_id)
    g = topup_bonus_grants.c
    seen = (
        insert(topup_bonus_grants)
        .values(
            payment_id=payment_id,
            holder_id=holder_id,
            status="not_granted",
            currency=currency,
            topup_minor=amount,
            bonus_minor=0,
        )
        .on_conflict_do_nothing()
        .returning(g.payment_id)
    )
    if (await tx.conn.execute(seen)).first() is None or await _refunded(tx, payment_id):
        return  # granted (or not) before; or refunded already: a refunded top-up earns nothing
    at = datetime.fromisoformat(str(data.get("succeeded_at") or event.time))
    p = topup_promotions.c
    running = (
        (
            await tx.conn.execute(
                select(topup_promotions).where(p.status == "running", p.currency == currency).order_by(p.promotion_id)
            )
        )
        .mappings()
        .all()
    )
    offers = sorted(
        ((bonus_for(tiers_of(r), amount), r) for r in running if in_window(at, r["valid_from"], r["valid_until"])),
        key=lambda offer: -offer[0],
    )  # the best bonus first; a promotion out of budget or over the holder's limit yields to the next
    for bonus, promotion in offers:
        if bonus <= 0 or not await _take(tx, promotion, holder_id, bonus):
            continue
        days = promotion["bonus_valid_days"]
        expires_at = at + timedelta(days=days) if days else None
        await tx.conn.execute(
            update(topup_bonus_grants)
            .where(g.payment_id == payment_id)
            .values(status="granted", promotion_id=promotion["promotion_id"], bonus_minor=bonus, expires_at=expires_at)
        )
        tx.publish(
            topic=TOPUPS_TOPIC,
            type=TOPUP_BONUS_GRANTED,
            subject=payment_id,
            data={
                "payment_id": payment_id,
                "holder_id": holder_id,
                "promotion_id": promotion["promotion_id"],
                "topup_minor": amount,
                "bonus_minor": bonus,
                "currency": currency,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        return


async def on_refund_event(tx: Tx, event: Envelope, *, now: datetime) -> None:
    """A refund of a promoted top-up revokes its bonus, once (a compare-and-set on the grant's status). The
    refund fact itself is stored by flows/points.py in this transaction, for a top-up that arrives later."""
    if event.type != "refund.succeeded":
        return
    await _serialise(tx, str(event.data["payment_id"]))
    g = topup_bonus_grants.c
    revoked = (
        (
            await tx.conn.execute(
                update(topup_bonus_grants)
                .where(g.payment_id == str(event.data["payment_id"]), g.status == "granted")
                .values(status="revoked", revoked_at=now)
                .returning(topup_bonus_grants)
            )
        )
        .mappings()
        .first()
    )
    if revoked is None:
        return
    tx.publish(
        topic=TOPUPS_TOPIC,
        type=TOPUP_BONUS_REVOKED,
        subject=revoked["payment_id"],
        data={
            "payment_id": revoked["payment_id"],
            "holder_id": revoked["holder_id"],
            "promotion_id": revoked["promotion_id"],
            "bonus_minor": revoked["bonus_minor"],
            "currency": revoked["currency"],
            "refund_id": event.data.get("refund_id"),
        },
    )


async def expire_round(tx: Tx, *, now: datetime, batch_max: int) -> int:
    """Granted bonuses past `expires_at` become `expired` (a compare-and-set from `granted`, so a refund's
    revocation and the expiry never both happen) and `topup.bonus_expired` tells the ledger to take back what
    is left of it. SKIP LOCKED: replicas share the sweep. Returns how many expired."""
    g = topup_bonus_grants.c
    due = (
        (
            await tx.conn.execute(
                select(topup_bonus_grants)
                .where(g.status == "granted", g.expires_at <= now)
                .order_by(g.expires_at)
                .limit(batch_max)
                .with_for_update(skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    for grant in due:
        await tx.conn.execute(
            update(topup_bonus_grants).where(g.payment_id == grant["payment_id"]).values(status="expired")
        )
        tx.publish(
            topic=TOPUPS_TOPIC,
            type=TOPUP_BONUS_EXPIRED,
            subject=grant["payment_id"],
            data={
                "payment_id": grant["payment_id"],
                "holder_id": grant["holder_id"],
                "promotion_id": grant["promotion_id"],
                "bonus_minor": grant["bonus_minor"],
                "currency": grant["currency"],
                "expires_at": grant["expires_at"].isoformat(),
            },
        )
    return len(due)
