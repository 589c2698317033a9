"""The checkout_sessions table and its compare-and-set queries (migration 0009).

A session's status moves only `open → completed | expired`, each by `UPDATE … WHERE status = 'open'`, so the
first success completes it once and nothing can complete or expire it again. Its payments take turns through
`payment_seq`: a new payment claims slot n+1 only while slot n is still the current one (one payment at a
time), and completing records which payment paid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.records import PaymentRecord
from services.cashier.store.codec import payment_from_row, payment_or_none
from services.cashier.store.tables import ID, metadata, payments, refunds

checkout_sessions = Table(
    "checkout_sessions",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("merchant_order_no", String(64), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("merchant_name", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", Text, nullable=False),
    Column("line_items", JSONB, nullable=False),
    Column("allowed_methods", JSONB),  # null: every method the merchant has
    Column("return_url", Text, nullable=False),
    Column("cancel_url", Text),
    Column("locale", String(8)),
    Column("wallet_holder_id", String(64)),
    Column("metadata", JSONB, nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("payment_seq", Integer, nullable=False, server_default=text("0")),
    Column("payment_id", String(ID)),  # the current payment (slot payment_seq), once recorded
    Column("payment_method", String(32)),
    Column("payment_scene", String(16)),
    Column("payment_request_id", String(64)),
    Column("payment_claimed_at", DateTime(timezone=True)),
    Column("paid_payment_id", String(ID)),
    Column("completed_at", DateTime(timezone=True)),
    Column("expired_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("payment_link_id", String(ID)),  # opened from this payment link (migration 0013)
    Column("livemode", Boolean, nullable=False),  # its payments' mode (docs/test-mode.md, migration 0016)
    UniqueConstraint("merchant_id", "merchant_order_no", name="uq_checkout_sessions_merchant_order"),
    UniqueConstraint("token_sha256", name="uq_checkout_sessions_token"),
    CheckConstraint("amount_minor > 0", name="ck_checkout_sessions_amount_positive"),
    Index("ix_checkout_sessions_open_expiry", "expires_at", postgresql_where=text("status = 'open'")),
)

OPEN = "open"


async def insert_session(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any] | None:
    """Insert; None when the merchant order number already has a session."""
    statement = (
        pg_insert(checkout_sessions)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_checkout_sessions_merchant_order")
        .returning(checkout_sessions)
    )
    return (await conn.execute(statement)).first()


async def get_session(conn: AsyncConnection, *, merchant_id: str, session_id: str) -> Row[Any] | None:
    query = select(checkout_sessions).where(
        checkout_sessions.c.id == session_id, checkout_sessions.c.merchant_id == merchant_id
    )
    return (await conn.execute(query)).first()


async def get_session_unscoped(conn: AsyncConnection, session_id: str) -> Row[Any] | None:
    return (await conn.execute(select(checkout_sessions).where(checkout_sessions.c.id == session_id))).first()


async def get_session_by_token(conn: AsyncConnection, token_sha256: str) -> Row[Any] | None:
    query = select(checkout_sessions).where(checkout_sessions.c.token_sha256 == token_sha256)
    return (await conn.execute(query)).first()


async def get_session_by_order_no(
    conn: AsyncConnection, *, merchant_id: str, merchant_order_no: str
) -> Row[Any] | None:
    query = select(checkout_sessions).where(
        checkout_sessions.c.merchant_id == merchant_id, checkout_sessions.c.merchant_order_no == merchant_order_no
    )
    return (await conn.execute(query)).first()


async def claim_payment_slot(
    conn: AsyncConnection, *, session_id: str, seq: int, method: str, scene: str, request_id: str, now: datetime
) -> bool:
    """Take slot `seq` (= the current + 1) for a new payment, only while the session is open and slot seq-1 is
    still the current one: of two concurrent starts one wins, the other changes nothing."""
    statement = (
        update(checkout_sessions)
        .where(
            checkout_sessions.c.id == session_id,
            checkout_sessions.c.status == OPEN,
            checkout_sessions.c.payment_seq == seq - 1,
        )
        .values(
            payment_seq=seq,
            payment_id=None,
            payment_method=method,
            payment_scene=scene,
            payment_request_id=request_id,
            payment_claimed_at=now,
        )
    )
    return (await conn.execute(statement)).rowcount == 1


async def record_payment(conn: AsyncConnection, *, session_id: str, seq: int, payment_id: str) -> None:
    await conn.execute(
        update(checkout_sessions)
        .where(checkout_sessions.c.id == session_id, checkout_sessions.c.payment_seq == seq)
        .values(payment_id=payment_id)
    )


async def complete_session(
    conn: AsyncConnection, *, session_id: str, payment_id: str, now: datetime
) -> Row[Any] | None:
    statement = (
        update(checkout_sessions)
        .where(checkout_sessions.c.id == session_id, checkout_sessions.c.status == OPEN)
        .values(status="completed", paid_payment_id=payment_id, completed_at=now)
        .returning(checkout_sessions)
    )
    return (await conn.execute(statement)).first()


async def expire_session(conn: AsyncConnection, *, session_id: str, now: datetime) -> Row[Any] | None:
    statement = (
        update(checkout_sessions)
        .where(checkout_sessions.c.id == session_id, checkout_sessions.c.status == OPEN)
        .values(status="expired", expired_at=now)
        .returning(checkout_sessions)
    )
    return (await conn.execute(statement)).first()


# A payment of a checkout session that a channel reported paid after Juhe had closed it (migration 0012's
# partial index covers exactly these rows). Every payment of a session other than the live one was closed
# before the next started, and a session is final only once its live one is closed or paid, so any second
# success of a session is such a late success.
_session_of_payment = payments.c.metadata["checkout_session_id"].astext
_LATE = (
    payments.c.late_success.is_(True),
    payments.c.status == "succeeded",
    payments.c.metadata.has_key("checkout_session_id"),
)
LATE_REFUND_PREFIX = "late."  # the refund's merchant refund number: `late.<payment id>`, unique per merchant


def late_refund_no(payment_id: str) -> str:
    return f"{LATE_REFUND_PREFIX}{payment_id}"


async def list_due(conn: AsyncConnection, *, now: datetime, limit: int) -> list[Row[Any]]:
    """Open sessions to settle: past their deadline, or whose current payment (or a late one) has succeeded."""
    paid = (
        select(payments.c.id)
        .where(payments.c.id == checkout_sessions.c.payment_id, payments.c.status == "succeeded")
        .exists()
    )
    late = select(payments.c.id).where(*_LATE, _session_of_payment == checkout_sessions.c.id).exists()
    query = (
        select(checkout_sessions)
        .where(checkout_sessions.c.status == OPEN, (checkout_sessions.c.expires_at <= now) | paid | late)
        .order_by(checkout_sessions.c.expires_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def first_late_success(conn: AsyncConnection, session_id: str) -> PaymentRecord | None:
    """The session's earliest late-succeeded payment, if any."""
    query = (
        select(payments)
        .where(*_LATE, _session_of_payment == session_id)
        .order_by(payments.c.succeeded_at, payments.c.id)
        .limit(1)
    )
    return payment_or_none((await conn.execute(query)).first())


async def list_late_to_refund(conn: AsyncConnection, *, limit: int) -> list[PaymentRecord]:
    """Late successes of final sessions that did not pay the session and have no refund yet: the payer paid
    twice, or after the session ended. A payment with any refund (ours, or the merchant's own) is left be."""
    refunded = select(refunds.c.id).where(refunds.c.payment_id == payments.c.id).exists()
    query = (
        select(payments)
        .join(checkout_sessions, checkout_sessions.c.id == _session_of_payment)
        .where(
            *_LATE,
            payments.c.purpose == "payment",
            checkout_sessions.c.status != OPEN,
            checkout_sessions.c.paid_payment_id.is_distinct_from(payments.c.id),
            ~refunded,
        )
        .order_by(payments.c.id)
        .limit(limit)
    )
    return [payment_from_row(row) for row in await conn.execute(query)]
