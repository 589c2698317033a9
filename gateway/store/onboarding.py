"""Merchant onboardings and merchant suspensions in the gateway database (migration 0008).

An onboarding row holds the request sealed (it carries channel credentials: AES-GCM like the merchants'
secrets), its fingerprint for idempotency, and the steps as one JSONB document changed by compare-and-set
on `updated_at`, under a lease (`lease_until`) so one replica drives it at a time and a replica that died
mid-way is taken over when the lease runs out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    RowMapping,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import merchants, metadata

merchant_onboardings = Table(
    "merchant_onboardings",
    metadata,
    Column("onboarding_id", Text, primary_key=True),
    Column("platform_id", Text, nullable=False),
    Column("merchant_id", Text, nullable=False, unique=True),
    Column("idempotency_key", Text, nullable=False),
    Column("request_hash", LargeBinary, nullable=False),
    Column("request_sealed", LargeBinary, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("steps", JSONB, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('processing', 'active', 'rejected')", name="merchant_onboardings_status_known"),
)

# Who suspended or resumed a merchant, when and why. Append-only.
merchant_status_changes = Table(
    "merchant_status_changes",
    metadata,
    Column("change_id", Text, primary_key=True),
    Column("merchant_id", Text, nullable=False),
    Column("platform_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def insert_onboarding(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(merchant_onboardings.insert().values(**values))


async def by_idempotency_key(conn: AsyncConnection, platform_id: str, key: str) -> RowMapping | None:
    stmt = select(merchant_onboardings).where(
        merchant_onboardings.c.platform_id == platform_id, merchant_onboardings.c.idempotency_key == key
    )
    return (await conn.execute(stmt)).mappings().first()


async def get_onboarding(
    conn: AsyncConnection, onboarding_id: str, *, platform_id: str | None = None
) -> RowMapping | None:
    stmt = select(merchant_onboardings).where(merchant_onboardings.c.onboarding_id == onboarding_id)
    if platform_id is not None:
        stmt = stmt.where(merchant_onboardings.c.platform_id == platform_id)
    return (await conn.execute(stmt)).mappings().first()


async def list_onboardings(
    conn: AsyncConnection, platform_id: str, *, status: str | None, after: str | None, limit: int
) -> list[RowMapping]:
    """A page of the platform's onboardings, oldest first (a review queue is worked in arrival order)."""
    stmt = select(merchant_onboardings).where(merchant_onboardings.c.platform_id == platform_id)
    if status is not None:
        stmt = stmt.where(merchant_onboardings.c.status == status)
    if after is not None:
        stmt = stmt.where(merchant_onboardings.c.onboarding_id > after)
    stmt = stmt.order_by(merchant_onboardings.c.onboarding_id).limit(limit)
    return list((await conn.execute(stmt)).mappings().all())


async def take_lease(conn: AsyncConnection, onboarding_id: str, *, lease_seconds: float) -> RowMapping | None:
    """The row, leased to the caller for `lease_seconds`, if it is processing and nobody else holds it."""
    stmt = text(
        "UPDATE merchant_onboardings SET lease_until = clock_timestamp() + make_interval(secs => :lease) "
        "WHERE onboarding_id = :id AND status = 'processing' "
        "AND (lease_until IS NULL OR lease_until < clock_timestamp()) RETURNING *"
    )
    return (await conn.execute(stmt, {"id": onboarding_id, "lease": lease_seconds})).mappings().first()


async def due_onboardings(conn: AsyncConnection, *, limit: int) -> list[str]:
    """Processing onboardings whose next attempt is due and whose lease (if any) ran out, oldest first."""
    stmt = text(
        "SELECT onboarding_id FROM merchant_onboardings WHERE status = 'processing' "
        "AND next_attempt_at <= clock_timestamp() AND (lease_until IS NULL OR lease_until < clock_timestamp()) "
        "ORDER BY next_attempt_at LIMIT :limit"
    )
    return [str(r[0]) for r in (await conn.execute(stmt, {"limit": limit})).all()]


async def save_steps(
    conn: AsyncConnection,
    onboarding_id: str,
    *,
    expected_updated_at: datetime,
    steps: dict[str, Any],
    status: str,
    attempts: int,
    retry_after_seconds: float | None,
    release: bool,
) -> RowMapping | None:
    """Compare-and-set on `updated_at`: None when someone else changed the row meanwhile."""
    values: dict[str, Any] = {"steps": steps, "status": status, "attempts": attempts}
    values["updated_at"] = func.clock_timestamp()
    if retry_after_seconds is not None:
        values["next_attempt_at"] = func.clock_timestamp() + func.make_interval(0, 0, 0, 0, 0, 0, retry_after_seconds)
    if release:
        values["lease_until"] = None
    stmt = (
        update(merchant_onboardings)
        .where(
            merchant_onboardings.c.onboarding_id == onboarding_id,
            merchant_onboardings.c.updated_at == expected_updated_at,
        )
        .values(**values)
        .returning(*merchant_onboardings.c)
    )
    return (await conn.execute(stmt)).mappings().first()


async def set_merchant_status(conn: AsyncConnection, merchant_id: str, *, status: str, expected: str) -> bool:
    stmt = (
        update(merchants)
        .where(merchants.c.id == merchant_id, merchants.c.status == expected)
        .values(status=status)
        .returning(merchants.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def merchant_state(
    conn: AsyncConnection, merchant_id: str, *, platform_id: str | None = None, lock: bool = False
) -> RowMapping | None:
    """Name, status and suspension of a merchant (of `platform_id` when given)."""
    stmt = text(
        "SELECT id AS merchant_id, name, status, suspended_at, suspension_reason FROM merchants "
        "WHERE id = :id AND (CAST(:platform AS text) IS NULL OR platform_id = :platform)"
        + (" FOR UPDATE" if lock else "")
    )
    return (await conn.execute(stmt, {"id": merchant_id, "platform": platform_id})).mappings().first()


async def set_suspension(conn: AsyncConnection, merchant_id: str, *, suspended: bool, reason: str | None) -> RowMapping:
    stmt = text(
        "UPDATE merchants SET suspended_at = CASE WHEN :suspended THEN clock_timestamp() END, "
        "suspension_reason = :reason WHERE id = :id "
        "RETURNING id AS merchant_id, name, status, suspended_at, suspension_reason"
    )
    row = (await conn.execute(stmt, {"id": merchant_id, "suspended": suspended, "reason": reason})).mappings().one()
    return row


async def record_status_change(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(merchant_status_changes.insert().values(**values))


async def status_changes(conn: AsyncConnection, merchant_id: str, *, limit: int) -> list[RowMapping]:
    stmt = (
        select(merchant_status_changes)
        .where(merchant_status_changes.c.merchant_id == merchant_id)
        .order_by(merchant_status_changes.c.change_id.desc())
        .limit(limit)
    )
    return list((await conn.execute(stmt)).mappings().all())
