"""Merchant webhook endpoints and the merchant event log (queries; every one scoped by merchant)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Row, Text, bindparam, cast, func, literal_column, null, select, union_all
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.webhooks import DeliveryStatus
from services.cashier.store.tables import merchant_events, merchants, webhook_deliveries, webhook_endpoints

EVENT_SEQ = DbSequence("merchant_event_seq")


async def insert_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(webhook_endpoints.insert().values(**values).returning(webhook_endpoints))).one()


async def count_endpoints(conn: AsyncConnection, merchant_id: str) -> int:
    query = select(func.count()).select_from(webhook_endpoints).where(webhook_endpoints.c.merchant_id == merchant_id)
    return int((await conn.execute(query)).scalar_one())


async def lock_merchant_endpoints(conn: AsyncConnection, merchant_id: str) -> None:
    """Serialize endpoint creation per merchant (the per-merchant limit is counted, then inserted)."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("webhook_endpoints:" + merchant_id))))


async def get_endpoint(
    conn: AsyncConnection, *, merchant_id: str, endpoint_id: str, for_update: bool = False
) -> Row[Any] | None:
    query = select(webhook_endpoints).where(
        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.merchant_id == merchant_id
    )
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def list_endpoints(
    conn: AsyncConnection, *, merchant_id: str, livemode: bool | None = None
) -> Sequence[Row[Any]]:
    """The merchant's endpoints, oldest first; `livemode` keeps one mode's (None: both)."""
    query = select(webhook_endpoints).where(webhook_endpoints.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(webhook_endpoints.c.livemode.is_(livemode))
    return (await conn.execute(query.order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id))).all()


def _delivery_targets_statement() -> Any:
    """The merchant's default URL (only when the payment names none) then its enabled endpoints of the event's mode,
    oldest first, in one statement (see `delivery_targets`)."""
    default_url = (
        select(merchants.c.notify_url).where(merchants.c.merchant_id == bindparam("merchant_id")).scalar_subquery()
    )
    notify_url = select(
        literal_column("0").label("rank"),
        func.coalesce(bindparam("notify_url", type_=Text), default_url).label("url"),
        cast(null(), webhook_endpoints.c.id.type).label("endpoint_id"),
        cast(null(), webhook_endpoints.c.enabled_events.type).label("enabled_events"),
        cast(null(), webhook_endpoints.c.created_at.type).label("created_at"),
    )
    endpoints = select(
        literal_column("1"),
        webhook_endpoints.c.url,
        webhook_endpoints.c.id,
        webhook_endpoints.c.enabled_events,
        webhook_endpoints.c.created_at,
    ).where(
        webhook_endpoints.c.merchant_id == bindparam("merchant_id"),
        webhook_endpoints.c.enabled.is_(True),
        webhook_endpoints.c.livemode == bindparam("livemode", type_=Boolean),
    )
    targets = union_all(notify_url, endpoints).subquery("targets")
    return (
        select(targets.c.url, targets.c.endpoint_id, targets.c.enabled_events)
        .where(targets.c.url.is_not(None))
        .order_by(targets.c.rank, targets.c.created_at, targets.c.endpoint_id)
    )


# Built once: the compiled-statement cache serves it to every event (docs/performance.md, fifth pass).
_DELIVERY_TARGETS = _delivery_targets_statement()


async def delivery_targets(
    conn: AsyncConnection, merchant_id: str, *, livemode: bool, notify_url: str | None
) -> Sequence[Row[Any]]:
    """Where an event of `livemode` goes, as (url, endpoint_id, enabled_events) rows: the payment's `notify_url`, else
    the merchant's default URL (endpoint_id None, when there is one), then every enabled endpoint of that mode
    (test events only to test endpoints, live to live ones; the caller keeps those subscribed to the event's type).
    One round trip where it was two (the merchant's URL, then the endpoints)."""
    params = {"merchant_id": merchant_id, "livemode": livemode, "notify_url": notify_url or None}
    return (await conn.execute(_DELIVERY_TARGETS, params)).all()


async def endpoints_by_id(conn: AsyncConnection, endpoint_ids: set[str]) -> dict[str, Row[Any]]:
    if not endpoint_ids:
        return {}
    rows = await conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id.in_(endpoint_ids)))
    return {r.id: r for r in rows}


async def update_endpoint(
    conn: AsyncConnection, *, merchant_id: str, endpoint_id: str, values: dict[str, Any]
) -> Row[Any] | None:
    statement = (
        webhook_endpoints.update()
        .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.merchant_id == merchant_id)
        .values(updated_at=func.now(), **values)
        .returning(webhook_endpoints)
    )
    return (await conn.execute(statement)).first()


async def delete_endpoint(conn: AsyncConnection, *, merchant_id: str, endpoint_id: str) -> bool:
    """Remove the endpoint and abandon what was still queued for it (its delivery log is kept)."""
    deleted = await conn.execute(
        webhook_endpoints.delete()
        .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.merchant_id == merchant_id)
        .returning(webhook_endpoints.c.id)
    )
    if deleted.first() is None:
        return False
    await conn.execute(
        webhook_deliveries.update()
        .where(
            webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == DeliveryStatus.PENDING.value
        )
        .values(status=DeliveryStatus.ABANDONED.value, next_attempt_at=None, last_error="endpoint deleted")
    )
    return True


async def delete_events_before(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` merchant events created before `before`, oldest first; how many went. Rows are
    claimed with SKIP LOCKED so two workers purging at once share the work instead of waiting on each other."""
    doomed = (
        select(merchant_events.c.id)
        .where(merchant_events.c.created_at < before)
        .order_by(merchant_events.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await conn.execute(merchant_events.delete().where(merchant_events.c.id.in_(doomed.scalar_subquery())))
    return int(result.rowcount or 0)


async def insert_event(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(merchant_events.insert().values(seq=EVENT_SEQ.next_value(), **values))


async def list_events(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    limit: int,
    after_seq: int | None,
    types: Sequence[str] | None,
    created_gte: datetime | None,
    created_lt: datetime | None,
    livemode: bool | None = None,
) -> Sequence[Row[Any]]:
    """Oldest first (the order they happened in); the cursor is the last `seq` of the previous page; `livemode`
    keeps one mode's events (None: both)."""
    query = select(merchant_events).where(merchant_events.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(merchant_events.c.livemode.is_(livemode))
    if after_seq is not None:
        query = query.where(merchant_events.c.seq > after_seq)
    if types:
        query = query.where(merchant_events.c.type.in_(types))
    if created_gte is not None:
        query = query.where(merchant_events.c.created_at >= created_gte)
    if created_lt is not None:
        query = query.where(merchant_events.c.created_at < created_lt)
    return (await conn.execute(query.order_by(merchant_events.c.seq).limit(limit))).all()


async def get_event(conn: AsyncConnection, *, merchant_id: str, event_id: str) -> Row[Any] | None:
    query = select(merchant_events).where(
        merchant_events.c.id == event_id, merchant_events.c.merchant_id == merchant_id
    )
    return (await conn.execute(query)).first()
