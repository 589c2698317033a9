"""Merchant webhook endpoints and the merchant event log (queries; every one scoped by merchant)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Row, ScalarSelect, Select, bindparam, func, select, true
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.webhooks import DeliveryStatus
from services.cashier.store.codec import RowLike, mapping_of
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


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Where one delivery of an event goes."""

    url: str
    endpoint_id: str | None  # None: the payment's notify_url or the merchant's default URL (the merchant's secret)
    enabled_events: Sequence[str]  # the endpoint's subscription; empty for a notify_url target (it takes every event)


def merchant_notify_url(merchant_id: ColumnElement[str]) -> ScalarSelect[Any]:
    """The merchant's default webhook URL, as a scalar subquery (`merchant_id` may be a correlated column)."""
    return select(merchants.c.notify_url).where(merchants.c.merchant_id == merchant_id).scalar_subquery()


def enabled_endpoints_of(merchant_id: ColumnElement[str], livemode: ColumnElement[bool]) -> Select[Any]:
    """The endpoints an event of `livemode` goes to: test events only to test endpoints, live to live ones (order
    by `created_at, id` where it is used). The arguments may be correlated columns: a LATERAL join reads the targets
    in the statement that reads the payment (store/notifications.py)."""
    return select(
        webhook_endpoints.c.id,
        webhook_endpoints.c.url,
        webhook_endpoints.c.enabled_events,
        webhook_endpoints.c.created_at,
    ).where(
        webhook_endpoints.c.merchant_id == merchant_id,
        webhook_endpoints.c.enabled.is_(True),
        webhook_endpoints.c.livemode == livemode,
    )


def delivery_targets_of(notify_url: str | None, rows: Sequence[RowLike]) -> list[DeliveryTarget]:
    """The targets from rows carrying `merchant_url` and, per enabled endpoint, its `endpoint_id`, `endpoint_url` and
    `enabled_events` (None on the one row of a merchant without endpoints): the payment's `notify_url`, else the
    merchant's default URL, when there is one, then the endpoints oldest first. Rows from SQLAlchemy or asyncpg
    (store/notifications.py reads them on asyncpg directly)."""
    columns = [mapping_of(row) for row in rows]
    url = notify_url or (columns[0]["merchant_url"] if columns else None)
    targets = [DeliveryTarget(url, None, ())] if url else []
    targets += [
        DeliveryTarget(c["endpoint_url"], c["endpoint_id"], c["enabled_events"]) for c in columns if c["endpoint_id"]
    ]
    return targets


def _delivery_targets_statement() -> Any:
    merchant = select(merchant_notify_url(bindparam("merchant_id")).label("merchant_url")).subquery("merchant")
    endpoints = enabled_endpoints_of(bindparam("merchant_id"), bindparam("livemode", type_=Boolean)).subquery()
    return (
        select(
            merchant.c.merchant_url,
            endpoints.c.id.label("endpoint_id"),
            endpoints.c.url.label("endpoint_url"),
            endpoints.c.enabled_events,
        )
        .select_from(merchant.outerjoin(endpoints, true()))
        .order_by(endpoints.c.created_at, endpoints.c.id)
    )


# Built once: the compiled-statement cache serves it to every event (docs/performance.md, fifth pass).
_DELIVERY_TARGETS = _delivery_targets_statement()


async def delivery_targets(
    conn: AsyncConnection, merchant_id: str, *, livemode: bool, notify_url: str | None
) -> list[DeliveryTarget]:
    """Where an event of `livemode` goes (`delivery_targets_of`; the caller keeps the endpoints subscribed to the
    event's type). One round trip where it was two (the merchant's URL, then the endpoints)."""
    rows = (await conn.execute(_DELIVERY_TARGETS, {"merchant_id": merchant_id, "livemode": livemode})).all()
    return delivery_targets_of(notify_url, rows)


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
