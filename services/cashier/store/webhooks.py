"""Merchant webhook deliveries: a durable queue in the cashier database, ordered per payment and endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    CTE,
    Boolean,
    Column,
    Insert,
    Row,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ClauseElement

from libs.common.db import OUTBOX_FIELDS
from libs.common.outbox_tables import outbox
from services.cashier.domain.webhooks import DeliveryStatus
from services.cashier.store.driver import DriverStatement
from services.cashier.store.tables import (
    merchant_events,
    merchants,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from services.cashier.store.webhook_endpoints import EVENT_SEQ

DELIVERY_SEQ = DbSequence("webhook_delivery_seq")


async def insert_event_with_deliveries(
    conn: AsyncConnection,
    event: dict[str, Any],
    deliveries: Sequence[dict[str, Any]],
    *,
    outbox_rows: Sequence[dict[str, Any]] = (),
) -> None:
    """The merchant event and its queued deliveries in one statement (the deliveries' INSERT carries the event's as a
    data-modifying CTE): one round trip for what was one plus one per target (docs/performance.md, fifth pass). Both
    are written or neither, as inside any transaction; `seq` orders the deliveries as they are listed. On asyncpg
    directly (store/driver.py), one statement per shape (the fields given, the number of deliveries) built on first
    use: built per call, its construct and cache key cost more than running it. `outbox_rows` (libs/common/db.py
    `Tx.take_outbox_rows`: the events the transaction published, e.g. the `payment.*` event the webhook announces)
    are written by the same statement, one data-modifying CTE more: no separate outbox INSERT before COMMIT."""
    key = webhook_shape(event, deliveries, outbox_rows)
    statement = _EVENT_WITH_DELIVERIES.get(key)
    if statement is None:
        *inserts, last = webhook_inserts(key)
        statement = _EVENT_WITH_DELIVERIES[key] = DriverStatement(
            last.add_cte(*(insert.cte(f"webhook_write_{i}") for i, insert in enumerate(inserts)))
        )
    await statement.execute(conn, webhook_parameters(event, deliveries, outbox_rows))


WebhookShape = tuple[tuple[str, ...], tuple[str, ...], int, int]
_EVENT_WITH_DELIVERIES: dict[WebhookShape, DriverStatement] = {}


def webhook_shape(
    event: dict[str, Any], deliveries: Sequence[dict[str, Any]], outbox_rows: Sequence[dict[str, Any]]
) -> WebhookShape:
    """What a webhook write's statement depends on: the event's fields, the deliveries' fields and number, the number
    of outbox rows (one statement is built per shape)."""
    delivery_fields = tuple(sorted(deliveries[0])) if deliveries else ()
    return tuple(sorted(event)), delivery_fields, len(deliveries), len(outbox_rows)


def webhook_parameters(
    event: dict[str, Any], deliveries: Sequence[dict[str, Any]], outbox_rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The binds of `webhook_inserts`: `e_*`, `d<i>_*` and `o<i>_*` (column names)."""
    parameters = {"e_" + name: value for name, value in event.items()}
    for i, delivery in enumerate(deliveries):
        parameters.update({f"d{i}_{name}": value for name, value in delivery.items()})
    for i, row in enumerate(outbox_rows):
        parameters.update({f"o{i}_{name}": row[name] for name in OUTBOX_FIELDS})
    return parameters


def webhook_inserts(shape: WebhookShape, *, gate: CTE | None = None) -> list[Insert]:
    """The INSERTs of a webhook write of `shape` (binds `e_*`, `d<i>_*`, `o<i>_*`): the outbox rows (if any), the
    merchant event, its deliveries (if any), for one statement (each but the last a data-modifying CTE). With `gate`
    (a data-modifying CTE of the caller's statement, at most one row: a compare-and-set's RETURNING) every row is
    selected from it, so nothing is written unless the gate wrote its row (flows/outcomes.py: a notification's success
    in one statement, docs/performance.md "Seventh pass: the cashier")."""
    event_fields, delivery_fields, count, outbox_count = shape
    inserts = []
    if outbox_count:
        inserts.append(
            _insert_rows(
                outbox,
                [
                    {name: bindparam(f"o{i}_{name}", type_=outbox.c[name].type) for name in OUTBOX_FIELDS}
                    for i in range(outbox_count)
                ],
                gate,
            )
        )
    event_row = {
        "seq": EVENT_SEQ.next_value(),
        **{name: bindparam("e_" + name, type_=merchant_events.c[name].type) for name in event_fields},
    }
    inserts.append(_insert_rows(merchant_events, [event_row], gate))
    if count:
        rows = [
            {
                "seq": DELIVERY_SEQ.next_value(),
                "status": DeliveryStatus.PENDING.value,
                **{name: bindparam(f"d{i}_{name}", type_=webhook_deliveries.c[name].type) for name in delivery_fields},
            }
            for i in range(count)
        ]
        inserts.append(_insert_rows(webhook_deliveries, rows, gate))
    return inserts


def _insert_rows(table: Table, rows: list[dict[str, Any]], gate: CTE | None) -> Insert:
    """`table`'s INSERT of `rows` (VALUES, in order), or with `gate` of the same rows selected from it."""
    if gate is None:
        return table.insert().values(rows)
    names = list(rows[0])
    selects = [select(*(_selectable(row[name], table.c[name]) for name in names)).select_from(gate) for row in rows]
    return table.insert().from_select(names, selects[0] if len(selects) == 1 else union_all(*selects))


def _selectable(value: Any, column: Column[Any]) -> Any:
    return value if isinstance(value, ClauseElement) else literal(value, column.type)


def _claim_statement() -> Any:
    """Due deliveries that are the oldest pending one of their payment for their target (in order per payment
    and endpoint; notify_url deliveries have no endpoint and keep their own order), leased until `lease_until`; each
    with what sending it needs, read by the same statement (one round trip where it was three: the claim, the
    merchants' sealed secrets, the endpoints): its merchant's sealed webhook secret and its endpoint's URL and sealed
    secrets as they are now (none when the endpoint was deleted)."""
    earlier = aliased(webhook_deliveries)
    blocked = (
        select(earlier.c.id)
        .where(
            and_(
                earlier.c.payment_id == webhook_deliveries.c.payment_id,
                earlier.c.endpoint_id.is_not_distinct_from(webhook_deliveries.c.endpoint_id),
                earlier.c.status == DeliveryStatus.PENDING.value,
                earlier.c.seq < webhook_deliveries.c.seq,
            )
        )
        .exists()
    )
    due = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
            webhook_deliveries.c.next_attempt_at <= bindparam("now"),
            ~blocked,
        )
        .order_by(webhook_deliveries.c.next_attempt_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = (
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id.in_(due))
        .values(next_attempt_at=bindparam("lease_until"))
        .returning(webhook_deliveries)
        .cte("claimed")
    )
    endpoint = webhook_endpoints.c
    return select(
        claimed,
        merchants.c.webhook_secret_sealed,
        endpoint.id.label("endpoint_found"),
        endpoint.url.label("endpoint_url"),
        endpoint.secret_sealed.label("endpoint_secret_sealed"),
        endpoint.previous_secret_sealed.label("endpoint_previous_secret_sealed"),
        endpoint.previous_secret_expires_at.label("endpoint_previous_secret_expires_at"),
    ).select_from(
        claimed.outerjoin(merchants, merchants.c.merchant_id == claimed.c.merchant_id).outerjoin(
            webhook_endpoints, endpoint.id == claimed.c.endpoint_id
        )
    )


# On asyncpg directly (store/driver.py): every delivery round that finds work runs it.
_CLAIM = DriverStatement(_claim_statement())


class ClaimedEndpoint(NamedTuple):
    """A delivery's webhook endpoint as the claim read it (what `flows/webhook_endpoints.endpoint_secrets` reads)."""

    id: str
    url: str
    secret_sealed: bytes
    previous_secret_sealed: bytes | None
    previous_secret_expires_at: datetime | None


class ClaimedDelivery(NamedTuple):
    """A `webhook_deliveries` row as the claim returns it (by attribute, as SQLAlchemy's rows are read), with its
    merchant's sealed webhook secret (None: no such merchant) and its endpoint now (None: no endpoint, or deleted)."""

    id: str
    seq: int
    merchant_id: str
    payment_id: str
    event_id: str
    event_type: str
    url: str
    endpoint_id: str | None
    body: str
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    webhook_secret_sealed: bytes | None
    endpoint: ClaimedEndpoint | None


_DELIVERY_COLUMNS = tuple(column.name for column in webhook_deliveries.c)
assert ClaimedDelivery._fields[: len(_DELIVERY_COLUMNS)] == _DELIVERY_COLUMNS, "the table's columns changed"


def _claimed(row: Any) -> ClaimedDelivery:
    endpoint = None
    if row["endpoint_found"] is not None:
        endpoint = ClaimedEndpoint(
            row["endpoint_found"],
            row["endpoint_url"],
            row["endpoint_secret_sealed"],
            row["endpoint_previous_secret_sealed"],
            row["endpoint_previous_secret_expires_at"],
        )
    return ClaimedDelivery._make([*(row[name] for name in _DELIVERY_COLUMNS), row["webhook_secret_sealed"], endpoint])


async def claim_due_deliveries(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> Sequence[ClaimedDelivery]:
    """Claim (lease) up to `limit` due deliveries in one statement (see `_claim_statement`). It needs no
    transaction around it: the lease is written by the statement that locks the rows (`FOR UPDATE SKIP LOCKED`), so
    it is atomic on an autocommit connection, and another replica skips the rows or finds them leased."""
    rows = await _CLAIM.fetch(conn, {"now": now, "lease_until": lease_until, "limit": limit})
    return [_claimed(row) for row in rows]


async def record_attempt(
    conn: AsyncConnection,
    delivery_id: str,
    *,
    attempt_no: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    delivered: bool,
    next_attempt_at: datetime | None,
) -> None:
    """Log one try and move the delivery on: delivered, retried later, or abandoned. One statement (the log row is
    a data-modifying CTE of the delivery's UPDATE), so both are written or neither without a transaction around it;
    the UPDATE is a compare-and-set on the try it follows, the log row is kept either way."""
    if delivered:
        status, when = DeliveryStatus.DELIVERED, None
    elif next_attempt_at is None:
        status, when = DeliveryStatus.ABANDONED, None
    else:
        status, when = DeliveryStatus.PENDING, next_attempt_at
    await _RECORD_ATTEMPT.execute(
        conn,
        {
            "delivery_id": delivery_id,
            "attempt_no": attempt_no,
            "previous_count": attempt_no - 1,
            "status_code": status_code,
            "error": error,
            "duration_ms": duration_ms,
            "status": status.value,
            "next_attempt_at": when,
            "delivered": delivered,
        },
    )


def _record_attempt_statement() -> Any:
    logged = webhook_attempts.insert().values(
        delivery_id=bindparam("delivery_id"),
        attempt_no=bindparam("attempt_no"),
        status_code=bindparam("status_code"),
        error=bindparam("error"),
        duration_ms=bindparam("duration_ms"),
    )
    return (
        webhook_deliveries.update()
        .where(
            webhook_deliveries.c.id == bindparam("delivery_id"),
            webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
            webhook_deliveries.c.attempt_count == bindparam("previous_count"),
        )
        .values(
            status=bindparam("status"),
            attempt_count=bindparam("attempt_no"),
            next_attempt_at=bindparam("next_attempt_at"),
            last_status_code=bindparam("status_code"),
            last_error=bindparam("error"),
            delivered_at=case((bindparam("delivered", type_=Boolean), func.now()), else_=null()),
        )
        .add_cte(logged.cte("attempt_logged"))
    )


# On asyncpg directly (store/driver.py): every webhook try records itself with it.
_RECORD_ATTEMPT = DriverStatement(_record_attempt_statement())


async def get_delivery(conn: AsyncConnection, *, merchant_id: str, delivery_id: str) -> Row[Any] | None:
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.merchant_id == merchant_id
    )
    return (await conn.execute(query)).first()


async def list_deliveries(
    conn: AsyncConnection, *, merchant_id: str, payment_id: str, limit: int, after_seq: int | None = None
) -> Sequence[Row[Any]]:
    """In delivery order; the cursor is the last `seq` of the previous page."""
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.merchant_id == merchant_id, webhook_deliveries.c.payment_id == payment_id
    )
    if after_seq is not None:
        query = query.where(webhook_deliveries.c.seq > after_seq)
    return (await conn.execute(query.order_by(webhook_deliveries.c.seq).limit(limit))).all()


async def list_endpoint_deliveries(
    conn: AsyncConnection, *, merchant_id: str, endpoint_id: str, limit: int, before_seq: int | None = None
) -> Sequence[Row[Any]]:
    """An endpoint's deliveries newest first (index ix_webhook_deliveries_endpoint); the cursor is the last `seq`."""
    query = select(webhook_deliveries).where(
        webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.merchant_id == merchant_id
    )
    if before_seq is not None:
        query = query.where(webhook_deliveries.c.seq < before_seq)
    return (await conn.execute(query.order_by(webhook_deliveries.c.seq.desc()).limit(limit))).all()


async def list_delivery_attempts(conn: AsyncConnection, delivery_id: str, *, limit: int) -> Sequence[Row[Any]]:
    """The latest `limit` tries of a delivery, oldest first (resends make the log grow without bound)."""
    query = (
        select(webhook_attempts)
        .where(webhook_attempts.c.delivery_id == delivery_id)
        .order_by(webhook_attempts.c.id.desc())
        .limit(limit)
    )
    return list(reversed((await conn.execute(query)).all()))


async def resend_delivery(
    conn: AsyncConnection, *, merchant_id: str, delivery_id: str, now: datetime
) -> Row[Any] | None:
    """Queue the delivery again from the start of the schedule (its attempt log is kept)."""
    statement = (
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.merchant_id == merchant_id)
        .values(status=DeliveryStatus.PENDING.value, attempt_count=0, next_attempt_at=now, delivered_at=None)
        .returning(webhook_deliveries)
    )
    return (await conn.execute(statement)).first()
