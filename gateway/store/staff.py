"""Queries of console staff: members, sessions, one-time links, recovery codes, audit log, refund requests.

State changes are compare-and-sets on the old state (a link is used once, a refund request is decided once, a
session is touched only while alive) with the database clock, so replicas and concurrent clicks agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, and_, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import (
    console_audit_log,
    console_merchant_settings,
    console_refund_requests,
    staff_links,
    staff_members,
    staff_recovery_codes,
    staff_sessions,
)


# ---- members ----------------------------------------------------------------------------------------------
async def insert_member(conn: AsyncConnection, **values: Any) -> bool:
    """False when the e-mail is taken (unique index)."""
    stmt = pg_insert(staff_members).values(**values).on_conflict_do_nothing().returning(staff_members.c.staff_id)
    return (await conn.execute(stmt)).first() is not None


async def get_member(conn: AsyncConnection, staff_id: str, *, lock: bool = False) -> RowMapping | None:
    stmt = select(staff_members).where(staff_members.c.staff_id == staff_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).mappings().first()


async def get_member_by_email(conn: AsyncConnection, email: str, *, lock: bool = False) -> RowMapping | None:
    stmt = select(staff_members).where(staff_members.c.email == email)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).mappings().first()


async def list_members(conn: AsyncConnection, *, merchant_id: str | None, platform_id: str) -> list[RowMapping]:
    """A merchant's staff (or, with None, the platform's operators), removed ones last; bounded."""
    where = (
        staff_members.c.merchant_id == merchant_id
        if merchant_id is not None
        else and_(staff_members.c.kind == "operator", staff_members.c.platform_id == platform_id)
    )
    stmt = select(staff_members).where(where).order_by(staff_members.c.staff_id).limit(500)
    return list((await conn.execute(stmt)).mappings())


async def count_active_with_role(conn: AsyncConnection, *, merchant_id: str, role: str) -> int:
    stmt = select(func.count()).where(
        staff_members.c.merchant_id == merchant_id, staff_members.c.role == role, staff_members.c.status == "active"
    )
    return int((await conn.execute(stmt)).scalar_one())


async def update_member(conn: AsyncConnection, staff_id: str, **values: Any) -> None:
    values["updated_at"] = func.clock_timestamp()
    await conn.execute(update(staff_members).where(staff_members.c.staff_id == staff_id).values(**values))


# ---- recovery codes -----------------------------------------------------------------------------------------
async def replace_recovery_codes(conn: AsyncConnection, staff_id: str, hashes: list[bytes]) -> None:
    await conn.execute(staff_recovery_codes.delete().where(staff_recovery_codes.c.staff_id == staff_id))
    await conn.execute(insert(staff_recovery_codes), [{"staff_id": staff_id, "code_hash": h} for h in hashes])


async def use_recovery_code(conn: AsyncConnection, staff_id: str, code_hash: bytes) -> bool:
    stmt = (
        update(staff_recovery_codes)
        .where(
            staff_recovery_codes.c.staff_id == staff_id,
            staff_recovery_codes.c.code_hash == code_hash,
            staff_recovery_codes.c.used_at.is_(None),
        )
        .values(used_at=func.clock_timestamp())
        .returning(staff_recovery_codes.c.staff_id)
    )
    return (await conn.execute(stmt)).first() is not None


# ---- sessions ---------------------------------------------------------------------------------------------
async def insert_session(
    conn: AsyncConnection,
    *,
    session_id: str,
    secret_hash: bytes,
    staff_id: str,
    ip: str,
    idle_expires_at: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(staff_sessions).values(
            session_id=session_id,
            secret_hash=secret_hash,
            staff_id=staff_id,
            ip=ip,
            idle_expires_at=idle_expires_at,
            expires_at=expires_at,
        )
    )


async def touch_session(
    conn: AsyncConnection, session_id: str, *, secret_hash: bytes, idle_seconds: int
) -> RowMapping | None:
    """One statement: the session is alive (not revoked, before both expiries, its member active) and its idle
    deadline moves on; the member's current role comes back, so a role change holds from the next request."""
    now = func.clock_timestamp()
    idle_until = func.least(
        now + func.make_interval(0, 0, 0, 0, 0, 0, literal(idle_seconds)), staff_sessions.c.expires_at
    )
    stmt = (
        update(staff_sessions)
        .where(
            staff_sessions.c.session_id == session_id,
            staff_sessions.c.secret_hash == secret_hash,  # SHA-256 of a 256-bit secret: equality leaks nothing useful
            staff_sessions.c.revoked_at.is_(None),
            staff_sessions.c.idle_expires_at > now,
            staff_sessions.c.expires_at > now,
            staff_members.c.staff_id == staff_sessions.c.staff_id,
            staff_members.c.status == "active",
        )
        .values(idle_expires_at=idle_until)
        .returning(
            staff_sessions.c.secret_hash,
            staff_sessions.c.expires_at,
            staff_sessions.c.idle_expires_at,
            staff_members.c.staff_id,
            staff_members.c.platform_id,
            staff_members.c.merchant_id,
            staff_members.c.kind,
            staff_members.c.role,
            staff_members.c.email,
            staff_members.c.name,
            staff_members.c.totp_enabled,
        )
    )
    return (await conn.execute(stmt)).mappings().first()


async def revoke_sessions(conn: AsyncConnection, staff_id: str, *, session_id: str | None = None) -> int:
    """Ends one session, or (no `session_id`) every session of the member: sign-out everywhere."""
    where = [staff_sessions.c.staff_id == staff_id, staff_sessions.c.revoked_at.is_(None)]
    if session_id is not None:
        where.append(staff_sessions.c.session_id == session_id)
    result = await conn.execute(update(staff_sessions).where(*where).values(revoked_at=func.clock_timestamp()))
    return int(result.rowcount or 0)


# ---- one-time links ------------------------------------------------------------------------------------------
async def insert_link(
    conn: AsyncConnection, *, link_id: str, purpose: str, secret_hash: bytes, staff_id: str, expires_at: datetime
) -> None:
    await conn.execute(
        insert(staff_links).values(
            link_id=link_id, purpose=purpose, secret_hash=secret_hash, staff_id=staff_id, expires_at=expires_at
        )
    )


async def get_link(conn: AsyncConnection, link_id: str, purpose: str) -> RowMapping | None:
    stmt = select(staff_links).where(
        staff_links.c.link_id == link_id,
        staff_links.c.purpose == purpose,
        staff_links.c.used_at.is_(None),
        staff_links.c.expires_at > func.clock_timestamp(),
    )
    return (await conn.execute(stmt)).mappings().first()


async def use_link(conn: AsyncConnection, link_id: str) -> bool:
    """Compare-and-set: used once, only while unexpired (database clock)."""
    stmt = (
        update(staff_links)
        .where(
            staff_links.c.link_id == link_id,
            staff_links.c.used_at.is_(None),
            staff_links.c.expires_at > func.clock_timestamp(),
        )
        .values(used_at=func.clock_timestamp())
        .returning(staff_links.c.link_id)
    )
    return (await conn.execute(stmt)).first() is not None


# ---- audit log ------------------------------------------------------------------------------------------------
async def insert_audit(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(console_audit_log).values(**values))


async def list_audit(
    conn: AsyncConnection, *, merchant_id: str | None, all_merchants: bool, before_id: str | None, limit: int
) -> list[RowMapping]:
    """Newest first by id (uuid7: time order), `limit` rows (the route bounds it; the caller asks one more than it
    shows, to know whether there is a next page); a merchant's own entries, or every entry."""
    stmt = select(console_audit_log).order_by(console_audit_log.c.audit_id.desc()).limit(limit)
    if not all_merchants:
        stmt = stmt.where(console_audit_log.c.merchant_id == merchant_id)
    if before_id is not None:
        stmt = stmt.where(console_audit_log.c.audit_id < before_id)
    return list((await conn.execute(stmt)).mappings())


# ---- maker-checker refunds ---------------------------------------------------------------------------------------
async def refund_threshold(conn: AsyncConnection, merchant_id: str) -> int | None:
    stmt = select(console_merchant_settings.c.refund_approval_threshold_minor).where(
        console_merchant_settings.c.merchant_id == merchant_id
    )
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return int(value) if value is not None else None


async def set_refund_threshold(conn: AsyncConnection, merchant_id: str, threshold_minor: int) -> None:
    stmt = pg_insert(console_merchant_settings).values(
        merchant_id=merchant_id, refund_approval_threshold_minor=threshold_minor
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[console_merchant_settings.c.merchant_id],
        set_={"refund_approval_threshold_minor": threshold_minor, "updated_at": func.clock_timestamp()},
    )
    await conn.execute(stmt)


async def insert_refund_request(conn: AsyncConnection, **values: Any) -> RowMapping:
    stmt = insert(console_refund_requests).values(**values).returning(console_refund_requests)
    return (await conn.execute(stmt)).mappings().one()


async def get_refund_request(conn: AsyncConnection, request_id: str, merchant_id: str) -> RowMapping | None:
    stmt = select(console_refund_requests).where(
        console_refund_requests.c.request_id == request_id, console_refund_requests.c.merchant_id == merchant_id
    )
    return (await conn.execute(stmt)).mappings().first()


async def decide_refund_request(
    conn: AsyncConnection, request_id: str, merchant_id: str, *, old: str, new: str, **values: Any
) -> RowMapping | None:
    """Compare-and-set on the status; None when someone else decided first (or it is not in `old`)."""
    stmt = (
        update(console_refund_requests)
        .where(
            console_refund_requests.c.request_id == request_id,
            console_refund_requests.c.merchant_id == merchant_id,
            console_refund_requests.c.status == old,
        )
        .values(status=new, **values)
        .returning(console_refund_requests)
    )
    return (await conn.execute(stmt)).mappings().first()


async def list_refund_requests(
    conn: AsyncConnection, merchant_id: str, *, status: str | None, before_id: str | None, limit: int
) -> list[RowMapping]:
    stmt = (
        select(console_refund_requests)
        .where(console_refund_requests.c.merchant_id == merchant_id)
        .order_by(console_refund_requests.c.request_id.desc())
        .limit(limit)  # bounded by the route; one more than the page shows (has_more)
    )
    if status is not None:
        stmt = stmt.where(console_refund_requests.c.status == status)
    if before_id is not None:
        stmt = stmt.where(console_refund_requests.c.request_id < before_id)
    return list((await conn.execute(stmt)).mappings())
