"""Payment and refund records, fee rates, rules and split executions (SQLAlchemy Core on a given connection)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from asyncpg import Record
from sqlalchemy import ARRAY, Text, and_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import ArrayInsert
from services.settlement.domain.splits import Share, SplitRule
from services.settlement.store.tables import (
    merchant_fee_rates,
    payment_records,
    receivers,
    refund_records,
    split_executions,
    split_rules,
)

# Statements built once (SQLAlchemy's compiled cache serves them; no construct or cache key built per call).
_LOCK_PAYMENT = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
# An aggregate consumes the rows in the array's order: the locks are taken in the (sorted) order given.
_LOCK_PAYMENTS = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest(CAST(:keys AS text[])) AS k"
)
_RATES = select(merchant_fee_rates.c.merchant_id, merchant_fee_rates.c.platform_fee_rate_bps).where(
    merchant_fee_rates.c.merchant_id == func.any(bindparam("ids", type_=ARRAY(Text)))
)
_RULES = select(split_rules).where(split_rules.c.merchant_id == func.any(bindparam("ids", type_=ARRAY(Text))))
_WITH_UNAPPLIED_REFUNDS = (
    select(refund_records.c.payment_id)
    .where(
        refund_records.c.payment_id == func.any(bindparam("ids", type_=ARRAY(Text))),
        refund_records.c.applied_at.is_(None),
        refund_records.c.status == "succeeded",
    )
    .distinct()
)

# The columns a payment event sets (flows/payments.py:record_payment), a column the event leaves out given as NULL,
# which is what an insert without it gave (the fee and settle-date columns have no default). The others
# (refunded_minor, updated_at) keep their server defaults.
_RECORD_COLUMNS = (
    "payment_id",
    "merchant_id",
    "merchant_order_no",
    "business_line",
    "channel",
    "out_trade_no",
    "channel_trade_no",
    "status",
    "amount_minor",
    "currency",
    "bill_date",
    "succeeded_at",
    "purpose",
    "explicit_split",
    "profit_sharing",
    "livemode",
    "channel_fee_minor",
    "channel_fee_rate_bps",
    "platform_fee_rate_bps",
    "platform_fee_minor",
    "margin_minor",
    "settle_date",
)
# A run's new records in one statement on asyncpg (libs.common.db.ArrayInsert): the ones whose payment has none yet.
_INSERT_RECORDS = ArrayInsert(payment_records, _RECORD_COLUMNS, "ON CONFLICT (payment_id) DO NOTHING RETURNING *")


async def platform_rate_bps(conn: AsyncConnection, merchant_id: str) -> int | None:
    value = await conn.scalar(
        select(merchant_fee_rates.c.platform_fee_rate_bps).where(merchant_fee_rates.c.merchant_id == merchant_id)
    )
    return int(value) if value is not None else None


async def platform_rates_bps(conn: AsyncConnection, merchant_ids: Sequence[str]) -> dict[str, int]:
    """`platform_rate_bps` of several merchants in one statement (a merchant without a rate is absent)."""
    rows = await conn.execute(_RATES, {"ids": list(merchant_ids)})
    return {row.merchant_id: int(row.platform_fee_rate_bps) for row in rows}


async def split_rules_of(conn: AsyncConnection, merchant_ids: Sequence[str]) -> dict[tuple[str, str], RowMapping]:
    """Every split rule of several merchants in one statement, by (merchant, business line)."""
    rows = (await conn.execute(_RULES, {"ids": list(merchant_ids)})).mappings()
    return {(row["merchant_id"], row["business_line"]): row for row in rows}


async def split_rule(conn: AsyncConnection, merchant_id: str, business_line: str = "") -> RowMapping | None:
    query = select(split_rules).where(
        split_rules.c.merchant_id == merchant_id, split_rules.c.business_line == business_line
    )
    return (await conn.execute(query)).mappings().first()


def math_rule(rule: RowMapping) -> SplitRule:
    """The stored rule as the domain's value."""
    return SplitRule(tuple(Share(**share) for share in rule["shares"]), rule["remainder_receiver_id"])


async def receivers_by_id(conn: AsyncConnection, receiver_ids: list[str]) -> dict[str, RowMapping]:
    rows = (await conn.execute(select(receivers).where(receivers.c.receiver_id.in_(receiver_ids)))).mappings()
    return {row["receiver_id"]: row for row in rows}


async def insert_payments(conn: AsyncConnection, values: Sequence[dict[str, Any]]) -> dict[str, Record]:
    """Insert the records of payments that have none yet, in one statement whatever their number (`values`: each
    payment once, as `record_payment` builds them); the rows inserted, by payment id. A payment that has its record
    already is left out of the answer, for `upsert_payment` (the caller holds every payment's lock, so nothing else
    inserts or changes them meanwhile)."""
    for one in values:
        unknown = one.keys() - _RECORD_COLUMNS
        if unknown:
            raise ValueError(f"not columns a payment event sets: {sorted(unknown)}")
    rows = await _INSERT_RECORDS.fetch(conn, values) if values else []
    return {row["payment_id"]: row for row in rows}


async def upsert_payment(conn: AsyncConnection, values: dict[str, Any]) -> tuple[str | None, Any]:
    """Insert the record, or move it to the event's status when that is a legal step: a final
    `succeeded` always wins (a late success after a failure is real money), `failed`/`closed` never
    overwrite `succeeded`. Returns (previous status or None if new, the row now). The caller holds the payment's
    lock (`lock_payment`), so the insert tried first (one statement for a new payment, the usual case) and the
    read that follows a conflict see the same row."""
    inserted = (await insert_payments(conn, [values])).get(values["payment_id"])
    if inserted is not None:
        return None, inserted
    previous = (
        await conn.execute(
            select(payment_records.c.status)
            .where(payment_records.c.payment_id == values["payment_id"])
            .with_for_update()
        )
    ).scalar()
    if previous is None:  # not possible under the payment's lock (the insert conflicted with it)
        raise RuntimeError(f"payment record {values['payment_id']} vanished under its lock")
    if previous == "succeeded" or previous == values["status"]:
        row = (
            (await conn.execute(select(payment_records).where(payment_records.c.payment_id == values["payment_id"])))
            .mappings()
            .one()
        )
        return str(previous), row
    changes = {k: v for k, v in values.items() if k != "payment_id"}
    row = (
        (
            await conn.execute(
                update(payment_records)
                .where(payment_records.c.payment_id == values["payment_id"], payment_records.c.status == previous)
                .values(**changes, updated_at=func.now())
                .returning(payment_records)
            )
        )
        .mappings()
        .one()
    )
    return str(previous), row


async def lock_payment(conn: AsyncConnection, payment_id: str) -> None:
    """Serialise every consumer that touches one payment's facts (its payment and refund events travel on
    two topics and race): a transaction-scoped advisory lock on the payment id, taken before any fact is
    read or written. It works before the payment row exists (a refund first), which a row lock cannot."""
    await conn.execute(_LOCK_PAYMENT, {"key": _lock_key(payment_id)})


async def lock_payments(conn: AsyncConnection, payment_ids: Iterable[str]) -> frozenset[str]:
    """`lock_payment` of several payments in one statement, in sorted order: two transactions locking overlapping
    sets wait for each other, never deadlock. Returns the payments locked."""
    locked = frozenset(payment_ids)
    await conn.execute(_LOCK_PAYMENTS, {"keys": [_lock_key(p) for p in sorted(locked)]})
    return locked


def _lock_key(payment_id: str) -> str:
    return f"settlement:payment:{payment_id}"


async def payments_with_unapplied_refunds(conn: AsyncConnection, payment_ids: Sequence[str]) -> frozenset[str]:
    """Which of the payments have a succeeded refund not applied yet (partial index `refund_records_unapplied`);
    the caller holds their locks, so no such refund appears meanwhile."""
    rows = await conn.execute(_WITH_UNAPPLIED_REFUNDS, {"ids": list(payment_ids)})
    return frozenset(str(p) for p in rows.scalars())


async def payment_for_update(conn: AsyncConnection, payment_id: str) -> RowMapping | None:
    query = select(payment_records).where(payment_records.c.payment_id == payment_id).with_for_update()
    return (await conn.execute(query)).mappings().first()


async def upsert_refund(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Store the refund fact; a repeat changes nothing, except that `succeeded` wins over `failed` (a late
    success is real money, a late failure never undoes one)."""
    stmt = insert(refund_records).values(**values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[refund_records.c.refund_id],
            set_={
                "status": stmt.excluded.status,
                "succeeded_at": stmt.excluded.succeeded_at,
                "bill_date": stmt.excluded.bill_date,
                "channel_refund_no": stmt.excluded.channel_refund_no,
            },
            where=and_(refund_records.c.status != "succeeded", stmt.excluded.status == "succeeded"),
        )
    )


async def unapplied_refunds(conn: AsyncConnection, payment_id: str) -> list[RowMapping]:
    """The payment's succeeded refunds whose effect is not derived yet, oldest first (locked)."""
    rows = await conn.execute(
        select(refund_records)
        .where(
            refund_records.c.payment_id == payment_id,
            refund_records.c.status == "succeeded",
            refund_records.c.applied_at.is_(None),
        )
        .order_by(refund_records.c.succeeded_at, refund_records.c.refund_id)
        .with_for_update()
    )
    return list(rows.mappings())


async def payments_with_parked_refunds(conn: AsyncConnection, limit: int) -> list[str]:
    """Succeeded payments that still have a succeeded refund not applied (partial index
    `refund_records_unapplied`): none in normal operation, as the payment's own event applies them."""
    rows = await conn.execute(
        select(refund_records.c.payment_id)
        .join(payment_records, payment_records.c.payment_id == refund_records.c.payment_id)
        .where(
            refund_records.c.applied_at.is_(None),
            refund_records.c.status == "succeeded",
            payment_records.c.status == "succeeded",
            payment_records.c.purpose != "wallet_topup",
        )
        .distinct()
        .limit(limit)
    )
    return [str(p) for p in rows.scalars()]


async def mark_refund_applied(conn: AsyncConnection, refund_id: str) -> None:
    await conn.execute(
        update(refund_records).where(refund_records.c.refund_id == refund_id).values(applied_at=func.now())
    )


async def add_refunded(conn: AsyncConnection, payment_id: str, amount_minor: int) -> tuple[int, RowMapping]:
    """Grow the payment's applied refund total (the caller holds the payment's lock); (total before, row after)."""
    row = (
        (
            await conn.execute(
                update(payment_records)
                .where(payment_records.c.payment_id == payment_id)
                .values(refunded_minor=payment_records.c.refunded_minor + amount_minor, updated_at=func.now())
                .returning(payment_records)
            )
        )
        .mappings()
        .one()
    )
    return int(row["refunded_minor"]) - amount_minor, row


async def insert_split(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    result = await conn.execute(
        insert(split_executions).values(**values).on_conflict_do_nothing(index_elements=[split_executions.c.source_key])
    )
    return bool(result.rowcount)


async def split_of_payment(conn: AsyncConnection, payment_id: str, *, for_update: bool = False) -> RowMapping | None:
    """The payment's live split: the realtime one, or the latest escrow one not voided."""
    query = (
        select(split_executions)
        .where(
            split_executions.c.payment_id == payment_id,
            split_executions.c.kind == "split",
            split_executions.c.status.not_in(("voiding", "voided")),
        )
        .order_by(split_executions.c.created_at.desc(), split_executions.c.split_id.desc())
        .limit(1)
    )
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def get_split(conn: AsyncConnection, split_id: str) -> RowMapping | None:
    return (
        (await conn.execute(select(split_executions).where(split_executions.c.split_id == split_id))).mappings().first()
    )


async def move_split(
    conn: AsyncConnection, split_id: str, from_statuses: tuple[str, ...], to_status: str, **values: Any
) -> bool:
    """Compare-and-set of a split's status (escrow: held → confirming → posted, held → voiding → voided)."""
    result = await conn.execute(
        update(split_executions)
        .where(split_executions.c.split_id == split_id, split_executions.c.status.in_(from_statuses))
        .values(status=to_status, next_attempt_at=func.now(), **values)
    )
    return bool(result.rowcount)


async def due_escrow_confirmations(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    rows = await conn.execute(
        select(split_executions.c.payment_id)
        .where(split_executions.c.status == "held", split_executions.c.confirm_deadline <= now)
        .order_by(split_executions.c.confirm_deadline)
        .limit(limit)
    )
    return [str(r) for r in rows.scalars()]


async def splits_for_payment(conn: AsyncConnection, payment_id: str) -> list[RowMapping]:
    rows = await conn.execute(
        select(split_executions)
        .where(split_executions.c.payment_id == payment_id)
        .order_by(split_executions.c.split_id)
    )
    return list(rows.mappings())


async def claim_due_splits(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> list[RowMapping]:
    """Lease due pending splits (SKIP LOCKED: replicas share the work; an expired lease is retaken)."""
    due = (
        select(split_executions.c.split_id)
        .where(
            split_executions.c.status.in_(("pending", "confirming", "voiding")),
            split_executions.c.next_attempt_at <= now,
        )
        .order_by(split_executions.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await conn.execute(
        update(split_executions)
        .where(split_executions.c.split_id.in_(due))
        .values(next_attempt_at=lease_until, attempt_count=split_executions.c.attempt_count + 1)
        .returning(split_executions)
    )
    return list(rows.mappings())


async def mark_split_posted(
    conn: AsyncConnection,
    split_id: str,
    transfer_id: str | None,
    now: datetime,
    *,
    from_status: str = "pending",
    to_status: str = "posted",
) -> bool:
    result = await conn.execute(
        update(split_executions)
        .where(split_executions.c.split_id == split_id, split_executions.c.status == from_status)
        .values(status=to_status, ledger_transfer_id=transfer_id, posted_at=now, last_error=None)
    )
    return bool(result.rowcount)


async def mark_split_retry(
    conn: AsyncConnection,
    split_id: str,
    error: str,
    next_attempt_at: datetime,
    *,
    failed: bool,
    status: str = "pending",
) -> None:
    await conn.execute(
        update(split_executions)
        .where(and_(split_executions.c.split_id == split_id, split_executions.c.status == status))
        .values(status="failed" if failed else status, last_error=error[:500], next_attempt_at=next_attempt_at)
    )


async def records_of_day(
    conn: AsyncConnection, channel: str, merchant_id: str, bill_date: date
) -> tuple[list[RowMapping], list[RowMapping]]:
    payments = (
        (
            await conn.execute(
                select(payment_records).where(
                    payment_records.c.channel == channel,
                    payment_records.c.bill_date == bill_date,
                    payment_records.c.merchant_id == merchant_id,
                )
            )
        )
        .mappings()
        .all()
    )
    refunds = (
        (
            await conn.execute(
                select(refund_records, payment_records.c.merchant_order_no, payment_records.c.out_trade_no)
                .join(payment_records, payment_records.c.payment_id == refund_records.c.payment_id)
                .where(
                    refund_records.c.channel == channel,
                    refund_records.c.bill_date == bill_date,
                    refund_records.c.merchant_id == merchant_id,
                )
            )
        )
        .mappings()
        .all()
    )
    return list(payments), list(refunds)
