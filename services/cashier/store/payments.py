"""Payments and attempts: inserts, reads scoped by merchant, and named status changes.

Every read returns typed records (domain/records.py, built by store/codec.py). A status changes only
through a named transition (`mark_payment_succeeded`, `mark_processing`, …): each is a
compare-and-set on the status it expects to replace (the record's, or the one legal source named in its
docstring), checked against the state machine of domain/payments.py, and returns the record as written.
A concurrent change makes the UPDATE match nothing: the transition returns None and the caller re-reads
and decides again.

The statements of a payment's create (the replay check, `insert_payment_with_attempt`, `mark_processing`) are
built once, with bind parameters: a statement built per call costs SQLAlchemy its construct, a bind parameter per
value and its cache key on every execution, while one built once memoizes its cache key and is served from the
engine's compiled cache (docs/performance.md, "Fifth pass").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import (
    CTE,
    JSON,
    Boolean,
    ColumnElement,
    Row,
    Select,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import OUTBOX_FIELDS
from libs.common.outbox_tables import outbox
from services.cashier.domain.payments import (
    AttemptStatus,
    PaymentScene,
    PaymentStatus,
    can_move_attempt,
    can_move_payment,
)
from services.cashier.domain.records import AttemptRecord, PaymentRecord
from services.cashier.store.codec import (
    PAYMENT_FIELDS,
    attempt_from_row,
    attempt_or_none,
    payment_from_row,
    payment_or_none,
)
from services.cashier.store.driver import DriverStatement
from services.cashier.store.tables import attempts, payments
from services.cashier.store.webhooks import WebhookShape, webhook_inserts, webhook_parameters, webhook_shape


async def get_payment(
    conn: AsyncConnection, *, merchant_id: str, payment_id: str, livemode: bool | None = None
) -> PaymentRecord | None:
    """The merchant's payment; with `livemode`, only if it is of that mode (a test key never sees a live one).

    Read by its primary key alone, the owner and the mode checked here: with `merchant_id` in the WHERE, a plan made
    before `payments` has statistics ties every index leading with `merchant_id` with the primary key and takes the
    newest, which reads every payment of the merchant (docs/performance.md, "Seventh pass, the coordinator")."""
    row = (await conn.execute(select(payments).where(payments.c.id == payment_id))).first()
    payment = payment_or_none(row)
    if payment is None or payment.merchant_id != merchant_id:
        return None
    if livemode is not None and payment.livemode is not livemode:
        return None
    return payment


async def get_payment_unscoped(conn: AsyncConnection, payment_id: str) -> PaymentRecord | None:
    """For the worker and channel notifications, which act for whichever merchant owns the payment."""
    return payment_or_none((await conn.execute(select(payments).where(payments.c.id == payment_id))).first())


_PAYMENT_BY_ORDER_NO = select(payments).where(
    payments.c.merchant_id == bindparam("merchant_id"), payments.c.merchant_order_no == bindparam("merchant_order_no")
)


async def get_payment_by_order_no(
    conn: AsyncConnection, *, merchant_id: str, merchant_order_no: str
) -> PaymentRecord | None:
    parameters = {"merchant_id": merchant_id, "merchant_order_no": merchant_order_no}
    return payment_or_none((await conn.execute(_PAYMENT_BY_ORDER_NO, parameters)).first())


async def list_payments(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    limit: int,
    after_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    amount_from: int | None = None,
    amount_to: int | None = None,
    livemode: bool | None = None,
) -> list[PaymentRecord]:
    """Newest first; the cursor is the last id of the previous page (ids sort by creation time). Amount bounds are
    inclusive (minor units); `livemode` keeps one mode's payments (None: both)."""
    query = select(payments).where(payments.c.merchant_id == merchant_id)
    if livemode is not None:
        query = query.where(payments.c.livemode.is_(livemode))
    if after_id:
        query = query.where(payments.c.id < after_id)
    if status:
        query = query.where(payments.c.status == status)
    if channel:
        query = query.where(payments.c.channel == channel)
    if created_from:
        query = query.where(payments.c.created_at >= created_from)
    if created_to:
        query = query.where(payments.c.created_at < created_to)
    if amount_from is not None:
        query = query.where(payments.c.amount_minor >= amount_from)
    if amount_to is not None:
        query = query.where(payments.c.amount_minor <= amount_to)
    return [payment_from_row(row) for row in await conn.execute(query.order_by(payments.c.id.desc()).limit(limit))]


async def payment_aggregates(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    created_from: datetime,
    created_to: datetime,
    timezone: str,
    livemode: bool | None = None,
) -> Sequence[Row[Any]]:
    """The merchant's payments created in [from, to) counted and summed in SQL by local day (in `timezone`),
    channel, status and currency: exact figures for any number of payments, without reading them. `livemode`
    keeps one mode's payments (None: both)."""
    day = func.date(func.timezone(timezone, payments.c.created_at)).label("day")
    query = (
        select(
            day,
            payments.c.channel,
            payments.c.status,
            payments.c.currency,
            func.count().label("count"),
            func.coalesce(func.sum(payments.c.amount_minor), 0).label("amount_minor"),
            func.coalesce(func.sum(payments.c.refunded_minor), 0).label("refunded_minor"),
            func.coalesce(func.sum(payments.c.fee_minor), 0).label("fee_minor"),
            func.coalesce(func.sum(payments.c.platform_fee_minor), 0).label("platform_fee_minor"),
        )
        .where(
            payments.c.merchant_id == merchant_id,
            payments.c.created_at >= created_from,
            payments.c.created_at < created_to,
            *([payments.c.livemode.is_(livemode)] if livemode is not None else []),
        )
        .group_by(day, payments.c.channel, payments.c.status, payments.c.currency)
        .order_by(day, payments.c.channel, payments.c.status, payments.c.currency)
    )
    return (await conn.execute(query)).all()


# ------------------------------------------------------------------------------------------ payment transitions


def _payment_cas(payment_id: str, *, old: PaymentStatus, new: PaymentStatus, values: dict[str, Any]) -> Update:
    """The one compare-and-set under every payment transition: `old → new` plus `values`, returning the row."""
    if not can_move_payment(old, new):
        raise ValueError(f"a payment cannot move from {old} to {new}")
    return (
        payments.update()
        .where(payments.c.id == payment_id, payments.c.status == old.value)
        .values(status=new.value, updated_at=func.now(), **values)
        .returning(payments)
    )


async def _move_payment(
    conn: AsyncConnection, payment_id: str, *, old: PaymentStatus, new: PaymentStatus, values: dict[str, Any]
) -> PaymentRecord | None:
    """`_payment_cas` run; None if the payment was not in `old`."""
    statement = _payment_cas(payment_id, old=old, new=new, values=values)
    return payment_or_none((await conn.execute(statement)).first())


def _succeeded_values(
    attempt: AttemptRecord,
    *,
    channel_trade_no: str | None,
    succeeded_at: datetime,
    late_success: bool,
    channel_discount: dict[str, Any] | None,
    wallet_split: dict[str, int] | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "current_attempt_id": attempt.id,
        "channel": attempt.channel,
        "route_id": attempt.route_id,
        "fee_minor": attempt.fee_minor,
        "fee_rate_bps": attempt.fee_rate_bps,
        "channel_trade_no": channel_trade_no,
        "succeeded_at": succeeded_at,
        "late_success": late_success,
    }
    if channel_discount is not None:
        values["channel_discount"] = channel_discount
    if wallet_split is not None:
        values["wallet_split"] = wallet_split
    return values


async def mark_payment_succeeded(
    conn: AsyncConnection,
    payment: PaymentRecord,
    *,
    attempt: AttemptRecord,
    channel_trade_no: str | None,
    succeeded_at: datetime,
    late_success: bool,
    channel_discount: dict[str, Any] | None = None,
    wallet_split: dict[str, int] | None = None,
) -> PaymentRecord | None:
    """`payment.status → succeeded` on `attempt`: the payment takes the attempt's channel, route and fee in force.
    `late_success` when it had been closed or failed (the channel holds the money). `channel_discount` and
    `wallet_split` are written only when given (None leaves the column as it is)."""
    values = _succeeded_values(
        attempt,
        channel_trade_no=channel_trade_no,
        succeeded_at=succeeded_at,
        late_success=late_success,
        channel_discount=channel_discount,
        wallet_split=wallet_split,
    )
    return await _move_payment(conn, payment.id, old=payment.status, new=PaymentStatus.SUCCEEDED, values=values)


async def mark_payment_failed(
    conn: AsyncConnection,
    payment: PaymentRecord,
    *,
    failed_at: datetime,
    failure_code: str,
    failure_message: str | None,
) -> PaymentRecord | None:
    """`payment.status → failed`: every candidate refused or was down, or the channel reported the trade failed."""
    values = {"failed_at": failed_at, "failure_code": failure_code, "failure_message": failure_message}
    return await _move_payment(conn, payment.id, old=payment.status, new=PaymentStatus.FAILED, values=values)


async def mark_payment_closed(
    conn: AsyncConnection, payment: PaymentRecord, *, closed_at: datetime, reason: str
) -> PaymentRecord | None:
    """`payment.status → closed`; `reason` (closed_by_merchant, expired, closed_at_channel, …) is kept as its
    `failure_code`."""
    values = {"closed_at": closed_at, "failure_code": reason}
    return await _move_payment(conn, payment.id, old=payment.status, new=PaymentStatus.CLOSED, values=values)


async def point_payment_at_attempt(
    conn: AsyncConnection,
    payment_id: str,
    *,
    attempt_id: str,
    channel: str,
    route_id: str | None,
    fee_minor: int | None,
    fee_rate_bps: int | None,
) -> PaymentRecord | None:
    """Point a still `created` payment at its next attempt (a fail-over) and that attempt's route and fee; the
    status does not change. None when the payment moved on meanwhile (closed by the merchant or expiry)."""
    statement = (
        payments.update()
        .where(payments.c.id == payment_id, payments.c.status == PaymentStatus.CREATED.value)
        .values(
            updated_at=func.now(),
            current_attempt_id=attempt_id,
            channel=channel,
            route_id=route_id,
            fee_minor=fee_minor,
            fee_rate_bps=fee_rate_bps,
        )
        .returning(payments)
    )
    return payment_or_none((await conn.execute(statement)).first())


# ------------------------------------------------------------------------------------------------- attempts


_INSERT_ATTEMPT = insert(attempts).returning(attempts)


def _attempt_and_payment(attempt_rows: CTE, payment_rows: CTE) -> Select[Any]:
    """One row carrying what two data-modifying CTEs returned: the attempt's columns as `a_*`, the payment's as
    `p_*` (read back by store/codec.py's prefixes); no row when either CTE wrote nothing."""
    return select(
        *(column.label("a_" + column.name) for column in attempt_rows.c),
        *(column.label("p_" + column.name) for column in payment_rows.c),
    ).select_from(attempt_rows.join(payment_rows, true()))


# What a payment's first attempt is given (store/payments.py `insert_payment_with_attempt`); its payment's id and
# merchant come from the payment row the same statement inserts.
FIRST_ATTEMPT_FIELDS = (
    "id",
    "seq",
    "channel",
    "route_id",
    "fee_minor",
    "fee_rate_bps",
    "out_trade_no",
    "status",
    "next_poll_at",
)
_PAYMENT_WITH_ATTEMPT: dict[tuple[frozenset[str], bool], DriverStatement] = {}
# What the payments table writes for a column an insert leaves out: its server defaults (store/tables.py); a
# nullable column without one is NULL. `payment_to_insert` builds the record from them.
_PAYMENT_DEFAULTS: dict[str, Any] = {
    "payer": {},
    "metadata": {},
    "platform_fee_minor": 0,
    "purpose": "payment",
    "profit_sharing": False,
    "discount_minor": 0,
    "late_success": False,
    "refund_reserved_minor": 0,
    "refunded_minor": 0,
}
_JSON_COLUMNS = frozenset(column.name for column in payments.c if isinstance(column.type, JSON))


def payment_to_insert(payment_values: dict[str, Any], *, now: datetime) -> PaymentRecord:
    """The record `insert_payment_with_attempt` writes for `payment_values`, built before it runs (the table's defaults
    for the columns left out, JSON as stored, timestamps in UTC as read back; `now` stands for the creation and update
    times the database sets itself): the create's `payment.created` is built from it, so that the insert's own
    statement writes the event's outbox row. tests/integration/test_driver_statements.py checks it against the row
    the insert returns."""
    row = dict.fromkeys(PAYMENT_FIELDS) | _PAYMENT_DEFAULTS | {"created_at": now, "updated_at": now}
    row.update((name, _stored(name, value)) for name, value in payment_values.items())
    return payment_from_row(row)


def _stored(name: str, value: Any) -> Any:
    """`value` of the column `name` as a row of payments or attempts reads it back: JSON as stored, times in UTC."""
    if name in _JSON_COLUMNS:
        return json.loads(json.dumps(value))
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def _payment_with_attempt_statement(payment_fields: frozenset[str], with_outbox: bool) -> Select[Any]:
    """The payment's INSERT … ON CONFLICT DO NOTHING and its first attempt's INSERT … SELECT from its RETURNING, as
    data-modifying CTEs: the attempt exists only if the payment was inserted (no row from it otherwise), and the
    attempt's foreign key is checked at the end of the statement, when both rows are there. `with_outbox`: the
    payment's event's outbox row is a third CTE selected from the payment's RETURNING likewise (written with the
    payment or not at all). One statement per set of payment fields given (a coupon adds three), built on first use.
    The row carries the payment's columns as `p_*` and the attempt's as `a_*`; binds are `pv_*` / `av_*` / `ov_*`
    (a bind named like a column would add a SET)."""
    new_payment = (
        insert(payments)
        .values({name: bindparam("pv_" + name, type_=payments.c[name].type) for name in sorted(payment_fields)})
        .on_conflict_do_nothing(constraint="uq_payments_merchant_order")
        .returning(payments)
        .cte("new_payment")
    )
    attempt_values = select(
        new_payment.c.id,
        new_payment.c.merchant_id,
        *(bindparam("av_" + name, type_=attempts.c[name].type) for name in FIRST_ATTEMPT_FIELDS),
    )
    new_attempt = (
        insert(attempts)
        .from_select(["payment_id", "merchant_id", *FIRST_ATTEMPT_FIELDS], attempt_values)
        .returning(attempts)
        .cte("new_attempt")
    )
    statement = _attempt_and_payment(new_attempt, new_payment)
    if not with_outbox:
        return statement
    event_values = select(*(bindparam("ov_" + name, type_=outbox.c[name].type) for name in OUTBOX_FIELDS))
    new_event = insert(outbox).from_select(list(OUTBOX_FIELDS), event_values.select_from(new_payment))
    return statement.add_cte(new_event.cte("new_event"))


async def insert_payment_with_attempt(
    conn: AsyncConnection,
    payment_values: dict[str, Any],
    attempt_values: dict[str, Any],
    *,
    event: dict[str, Any] | None = None,
) -> tuple[PaymentRecord, AttemptRecord] | None:
    """Insert a payment and its first attempt (`FIRST_ATTEMPT_FIELDS` of `attempt_values`) as ONE statement: None
    when (merchant_id, merchant_order_no) already exists, and then no attempt is inserted either.
    The payment may point at the attempt (`current_attempt_id`) it is inserted with. With `event` (an outbox row,
    libs/common/db.py `outbox_row`), the same statement writes it, only if it inserts the payment: atomic on its own,
    so it needs no transaction around it (flows/payments.py runs it in autocommit)."""
    key = (frozenset(payment_values), event is not None)
    statement = _PAYMENT_WITH_ATTEMPT.get(key)
    if statement is None:
        statement = _PAYMENT_WITH_ATTEMPT[key] = DriverStatement(_payment_with_attempt_statement(*key))
    parameters = {"pv_" + name: value for name, value in payment_values.items()}
    parameters.update({"av_" + name: attempt_values[name] for name in FIRST_ATTEMPT_FIELDS})
    if event is not None:
        parameters.update({"ov_" + name: event[name] for name in OUTBOX_FIELDS})
    row = await statement.fetchrow(conn, parameters)
    if row is None:
        return None
    return payment_from_row(row, "p_"), attempt_from_row(row, "a_")


async def insert_attempt(conn: AsyncConnection, values: dict[str, Any]) -> AttemptRecord:
    return attempt_from_row((await conn.execute(_INSERT_ATTEMPT, values)).one())


async def list_attempts(conn: AsyncConnection, payment_id: str) -> list[AttemptRecord]:
    query = select(attempts).where(attempts.c.payment_id == payment_id).order_by(attempts.c.seq)
    return [attempt_from_row(row) for row in await conn.execute(query)]


async def list_attempts_of(conn: AsyncConnection, payment_ids: Sequence[str]) -> dict[str, list[AttemptRecord]]:
    """The attempts of a page of payments in one query (a list shows each payment's attempts, as a read does)."""
    found: dict[str, list[AttemptRecord]] = {payment_id: [] for payment_id in payment_ids}
    if payment_ids:
        query = select(attempts).where(attempts.c.payment_id.in_(payment_ids)).order_by(attempts.c.seq)
        for row in await conn.execute(query):
            attempt = attempt_from_row(row)
            found[attempt.payment_id].append(attempt)
    return found


async def get_attempt(conn: AsyncConnection, attempt_id: str) -> AttemptRecord | None:
    return attempt_or_none((await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first())


async def get_attempt_by_out_trade_no(
    conn: AsyncConnection, *, merchant_id: str, channel: str, out_trade_no: str
) -> AttemptRecord | None:
    query = select(attempts).where(
        attempts.c.out_trade_no == out_trade_no,
        attempts.c.merchant_id == merchant_id,
        attempts.c.channel == channel,
    )
    return attempt_or_none((await conn.execute(query)).first())


# ------------------------------------------------------------------------------------------ attempt transitions


def _attempt_cas(attempt_id: str, *, old: AttemptStatus, new: AttemptStatus, values: dict[str, Any]) -> Update:
    """The one compare-and-set under every attempt transition: `old → new` plus `values`, returning the row."""
    if not can_move_attempt(old, new):
        raise ValueError(f"an attempt cannot move from {old} to {new}")
    return (
        attempts.update()
        .where(attempts.c.id == attempt_id, attempts.c.status == old.value)
        .values(status=new.value, updated_at=func.now(), **values)
        .returning(attempts)
    )


async def _move_attempt(
    conn: AsyncConnection, attempt_id: str, *, old: AttemptStatus, new: AttemptStatus, values: dict[str, Any]
) -> AttemptRecord | None:
    """`_attempt_cas` run; None if the attempt was not in `old`."""
    statement = _attempt_cas(attempt_id, old=old, new=new, values=values)
    return attempt_or_none((await conn.execute(statement)).first())


def _processing_statement() -> Select[Any]:
    """`mark_processing`'s one statement: both compare-and-sets as data-modifying CTEs, the payment's gated on the
    attempt's having matched; each UPDATE locks and re-checks its row exactly as it would alone. The row carries
    the attempt's columns as `a_*` and the payment's as `p_*`; no row when either matched nothing. No parameter is
    named like a column: SQLAlchemy would take it for one more SET of an UPDATE."""
    assert can_move_attempt(AttemptStatus.CREATED, AttemptStatus.PROCESSING)
    assert can_move_payment(PaymentStatus.CREATED, PaymentStatus.PROCESSING)
    moved_attempt = (
        attempts.update()
        .where(attempts.c.id == bindparam("cas_attempt_id"), attempts.c.status == AttemptStatus.CREATED.value)
        .values(
            status=AttemptStatus.PROCESSING.value,
            updated_at=func.now(),
            payer_action=bindparam("new_payer_action", type_=attempts.c.payer_action.type),
            channel_trade_no=bindparam("new_channel_trade_no", type_=attempts.c.channel_trade_no.type),
            latency_ms=bindparam("new_latency_ms", type_=attempts.c.latency_ms.type),
            next_poll_at=bindparam("new_next_poll_at", type_=attempts.c.next_poll_at.type),
        )
        .returning(*attempts.c)
        .cte("moved_attempt")
    )
    moved_payment = (
        payments.update()
        .where(
            payments.c.id == bindparam("cas_payment_id"),
            payments.c.status == PaymentStatus.CREATED.value,
            exists(select(moved_attempt.c.id)),
        )
        .values(
            status=PaymentStatus.PROCESSING.value,
            updated_at=func.now(),
            payer_action=bindparam("new_payment_payer_action", type_=payments.c.payer_action.type),
        )
        .returning(*payments.c)
        .cte("moved_payment")
    )
    return _attempt_and_payment(moved_attempt, moved_payment)


# On asyncpg directly (store/driver.py): every payment's first answer runs it.
_MARK_PROCESSING = DriverStatement(_processing_statement())


async def mark_processing(
    conn: AsyncConnection,
    *,
    payment_id: str,
    attempt_id: str,
    payer_action: dict[str, Any] | None,
    channel_trade_no: str | None,
    latency_ms: int | None,
    next_poll_at: datetime,
) -> tuple[PaymentRecord, AttemptRecord] | None:
    """`mark_attempt_processing` then `mark_payment_processing`, as ONE statement: the channel's first answer to
    the prepay. The attempt moves `created → processing` only if still `created` (else nothing changes: a
    concurrent driver answered first); the payment moves `created → processing` only if the attempt did and the
    payment is still `created` (else the attempt alone is `processing`, as the two statements in one transaction
    left it). Returns both rows as written, or None when either matched nothing. One statement is atomic on its own,
    so the caller may run it in autocommit: one round trip instead of BEGIN, two UPDATEs and COMMIT."""
    parameters = {
        "cas_attempt_id": attempt_id,
        "cas_payment_id": payment_id,
        "new_payer_action": payer_action,
        "new_payment_payer_action": payer_action,
        "new_channel_trade_no": channel_trade_no,
        "new_latency_ms": latency_ms,
        "new_next_poll_at": next_poll_at,
    }
    row = await _MARK_PROCESSING.fetchrow(conn, parameters)
    if row is None:
        return None
    return payment_from_row(row, "p_"), attempt_from_row(row, "a_")


async def mark_attempt_refused(
    conn: AsyncConnection,
    attempt: AttemptRecord,
    *,
    failure_code: str,
    failure_message: str,
    retryable: bool,
    latency_ms: int,
    finished_at: datetime,
) -> AttemptRecord | None:
    """`attempt.status → failed` because its prepay failed (refused, or the channel was down: `retryable`)."""
    values = {
        "failure_code": failure_code,
        "failure_message": failure_message,
        "retryable": retryable,
        "latency_ms": latency_ms,
        "finished_at": finished_at,
        "next_poll_at": None,
    }
    return await _move_attempt(conn, attempt.id, old=attempt.status, new=AttemptStatus.FAILED, values=values)


def _finished(finished_at: datetime, channel_trade_no: str | None) -> dict[str, Any]:
    """What every final attempt transition writes: when, no more polling, and the channel's trade number when the
    channel named one (None leaves the one recorded before)."""
    values: dict[str, Any] = {"finished_at": finished_at, "next_poll_at": None}
    if channel_trade_no:
        values["channel_trade_no"] = channel_trade_no
    return values


def _attempt_succeeded_values(
    finished_at: datetime, channel_trade_no: str | None, *, duplicate_success: bool
) -> dict[str, Any]:
    values = _finished(finished_at, channel_trade_no)
    if duplicate_success:
        values["duplicate_success"] = True
    return values


async def mark_attempt_succeeded(
    conn: AsyncConnection,
    attempt: AttemptRecord,
    *,
    finished_at: datetime,
    channel_trade_no: str | None,
    duplicate_success: bool,
) -> AttemptRecord | None:
    """`attempt.status → succeeded`: the channel has the payer's money. `duplicate_success` when the payment had
    already succeeded on another attempt (the payer paid twice: the operator refunds this one)."""
    values = _attempt_succeeded_values(finished_at, channel_trade_no, duplicate_success=duplicate_success)
    return await _move_attempt(conn, attempt.id, old=attempt.status, new=AttemptStatus.SUCCEEDED, values=values)


def _succeeded_statement() -> Select[Any]:
    """`mark_succeeded`'s one statement, built once (its cache key memoized, served by the compiled cache: building it
    per call cost more CPU than running it)."""
    return _attempt_and_payment(*_succeeded_ctes(row_versions=False))


# The version of a row as read (its `xmin`: the transaction that wrote it), compared by `settle_succeeded`: a row
# written by anyone since it was read has another one.
ATTEMPT_ROW_VERSION = cast(literal_column("attempts.xmin"), Text)
PAYMENT_ROW_VERSION = cast(literal_column("payments.xmin"), Text)


def _succeeded_ctes(*, row_versions: bool) -> tuple[CTE, CTE]:
    """The attempt's and the payment's compare-and-sets of a success, as data-modifying CTEs, the payment's gated on
    the attempt's. They write what `mark_attempt_succeeded` (not a duplicate) and `mark_payment_succeeded` write: the
    attempt's trade number only when the channel named one, the channel's discount and the wallet split only when
    given (`set_*` flags); `succeeded_records` builds the same rows in Python. Parameters are never named like a
    column (SQLAlchemy would take one for one more SET of an UPDATE).

    `row_versions` (a statement with no transaction around it: `settle_succeeded`): both rows are first locked
    (`FOR UPDATE`, the attempt then the payment, the order of every other transition) only if each is still at the
    version read (`attempt_row_version`, `payment_row_version`: re-checked on the latest version when a concurrent
    writer held it), and the attempt moves only if both were locked. So either both rows move or neither: without
    the locks the attempt could move and the payment, changed meanwhile, not, and no ROLLBACK would undo it."""
    attempt_matches = [
        attempts.c.id == bindparam("cas_attempt_id"),
        attempts.c.status == bindparam("old_attempt_status"),
    ]
    payment_matches = [
        payments.c.id == bindparam("cas_payment_id"),
        payments.c.status == bindparam("old_payment_status"),
    ]
    if row_versions:
        locked_attempt = (
            select(attempts.c.id)
            .where(*attempt_matches, bindparam("attempt_row_version", type_=Text) == ATTEMPT_ROW_VERSION)
            .with_for_update()
            .cte("locked_attempt")
        )
        locked_payment = (
            select(payments.c.id)
            .where(
                *payment_matches,
                bindparam("payment_row_version", type_=Text) == PAYMENT_ROW_VERSION,
                exists(select(locked_attempt.c.id)),  # evaluated before this row is locked: the attempt first
            )
            .with_for_update()
            .cte("locked_payment")
        )
        attempt_matches.append(exists(select(locked_payment.c.id)))
    moved_attempt = (
        attempts.update()
        .where(*attempt_matches)
        .values(
            status=AttemptStatus.SUCCEEDED.value,
            updated_at=func.now(),
            finished_at=bindparam("new_finished_at", type_=attempts.c.finished_at.type),
            next_poll_at=None,
            channel_trade_no=func.coalesce(
                bindparam("new_attempt_trade_no", type_=attempts.c.channel_trade_no.type), attempts.c.channel_trade_no
            ),
        )
        .returning(*attempts.c)
        .cte("moved_attempt")
    )

    def given(name: str, column: Any) -> Any:
        return case(
            (bindparam(f"set_{name}", type_=Boolean), bindparam(f"new_{name}", type_=column.type)), else_=column
        )

    moved_payment = (
        payments.update()
        .where(
            *payment_matches,
            payments.c.id == moved_attempt.c.payment_id,  # no row moved: nothing to join, the payment is not updated
        )
        .values(
            status=PaymentStatus.SUCCEEDED.value,
            updated_at=func.now(),
            current_attempt_id=moved_attempt.c.id,
            channel=moved_attempt.c.channel,
            route_id=moved_attempt.c.route_id,
            fee_minor=moved_attempt.c.fee_minor,
            fee_rate_bps=moved_attempt.c.fee_rate_bps,
            channel_trade_no=moved_attempt.c.channel_trade_no,
            succeeded_at=bindparam("new_succeeded_at", type_=payments.c.succeeded_at.type),
            late_success=bindparam("new_late_success", type_=payments.c.late_success.type),
            channel_discount=given("channel_discount", payments.c.channel_discount),
            wallet_split=given("wallet_split", payments.c.wallet_split),
        )
        .returning(*payments.c)
        .cte("moved_payment")
    )
    return moved_attempt, moved_payment


# On asyncpg directly (store/driver.py): every payment's success runs it.
_MARK_SUCCEEDED = DriverStatement(_succeeded_statement())


class SuccessValues(TypedDict):
    """What a channel's success of the payment's attempt writes besides the statuses (`_succeeded_ctes`): when, the
    channel's trade number (None keeps the attempt's), its pay time, whether it came after a close or failure, and
    the channel's discount and the wallet split (left as they are when not given or None)."""

    finished_at: datetime
    channel_trade_no: str | None
    succeeded_at: datetime
    late_success: bool
    channel_discount: NotRequired[dict[str, Any] | None]
    wallet_split: NotRequired[dict[str, int] | None]


async def mark_succeeded(
    conn: AsyncConnection, attempt: AttemptRecord, payment: PaymentRecord, **values: Unpack[SuccessValues]
) -> tuple[AttemptRecord, PaymentRecord] | None:
    """`mark_attempt_succeeded` then `mark_payment_succeeded` on it, as ONE statement (the channel's success of the
    payment's attempt: a poll, a close, a confirmation): the attempt's compare-and-set and the payment's, gated on the
    attempt's having matched, as data-modifying CTEs (as `mark_processing`). Each UPDATE locks and re-checks its row
    exactly as it would alone; None when either matched nothing (the caller's transaction rolls back and decides
    again, as after the two statements). The payment takes the attempt's channel, route, fee and trade number as the
    attempt's UPDATE wrote them (the channel's, else the one recorded before)."""
    row = await _MARK_SUCCEEDED.fetchrow(conn, _succeeded_parameters(attempt, payment, values))
    if row is None:
        return None
    return attempt_from_row(row, "a_"), payment_from_row(row, "p_")


def _succeeded_parameters(attempt: AttemptRecord, payment: PaymentRecord, values: SuccessValues) -> dict[str, Any]:
    """The binds of `_succeeded_ctes` (the transitions checked first, as the domain allows them)."""
    if not can_move_attempt(attempt.status, AttemptStatus.SUCCEEDED):
        raise ValueError(f"an attempt cannot move from {attempt.status} to {AttemptStatus.SUCCEEDED}")
    if not can_move_payment(payment.status, PaymentStatus.SUCCEEDED):
        raise ValueError(f"a payment cannot move from {payment.status} to {PaymentStatus.SUCCEEDED}")
    channel_discount, wallet_split = values.get("channel_discount"), values.get("wallet_split")
    return {
        "cas_attempt_id": attempt.id,
        "old_attempt_status": attempt.status.value,
        "new_finished_at": values["finished_at"],
        "new_attempt_trade_no": values["channel_trade_no"] or None,  # _finished: only a trade number the channel named
        "cas_payment_id": payment.id,
        "old_payment_status": payment.status.value,
        "new_succeeded_at": values["succeeded_at"],
        "new_late_success": values["late_success"],
        "set_channel_discount": channel_discount is not None,
        "new_channel_discount": channel_discount,
        "set_wallet_split": wallet_split is not None,
        "new_wallet_split": wallet_split,
    }


def succeeded_records(
    attempt: AttemptRecord, payment: PaymentRecord, **values: Unpack[SuccessValues]
) -> tuple[AttemptRecord, PaymentRecord]:
    """The rows `_succeeded_ctes` writes over `attempt` and `payment` when they are still as read, built before it
    runs (JSON as stored, timestamps in UTC as read back; `finished_at` stands for the update time the database sets
    itself), so that the statement can write the event and webhook built from them (`settle_succeeded`).
    tests/integration/test_driver_statements.py checks them against the rows it writes."""
    finished_at = _stored("finished_at", values["finished_at"])
    moved = dataclasses.replace(
        attempt,
        status=AttemptStatus.SUCCEEDED,
        updated_at=finished_at,
        finished_at=finished_at,
        next_poll_at=None,
        channel_trade_no=values["channel_trade_no"] or attempt.channel_trade_no,
    )
    given = {name: values.get(name) for name in ("channel_discount", "wallet_split")}
    paid = dataclasses.replace(
        payment,
        status=PaymentStatus.SUCCEEDED,
        updated_at=finished_at,
        current_attempt_id=moved.id,
        channel=moved.channel,
        route_id=moved.route_id,
        fee_minor=moved.fee_minor,
        fee_rate_bps=moved.fee_rate_bps,
        channel_trade_no=moved.channel_trade_no,
        succeeded_at=_stored("succeeded_at", values["succeeded_at"]),
        late_success=values["late_success"],
        **{name: _stored(name, value) for name, value in given.items() if value is not None},
    )
    return moved, paid


_SETTLED: dict[WebhookShape, DriverStatement] = {}


def _settled_statement(shape: WebhookShape) -> Select[Any]:
    """`settle_succeeded`'s statement for one webhook shape: the success's compare-and-sets on the rows' versions as
    read, and the webhook's writes selected from the payment's (store/webhooks.py `webhook_inserts`), all data-modifying
    CTEs of one statement; its one row is the payment's id, none when the compare-and-sets matched nothing."""
    _, moved_payment = _succeeded_ctes(row_versions=True)  # the attempt's CTE is the payment's gate
    writes = webhook_inserts(shape, gate=moved_payment)
    return select(moved_payment.c.id).add_cte(*(write.cte(f"webhook_write_{i}") for i, write in enumerate(writes)))


async def settle_succeeded(
    conn: AsyncConnection,
    attempt: AttemptRecord,
    payment: PaymentRecord,
    *,
    row_versions: tuple[str, str],
    event: dict[str, Any],
    deliveries: Sequence[dict[str, Any]],
    outbox_rows: Sequence[dict[str, Any]],
    **values: Unpack[SuccessValues],
) -> bool:
    """`mark_succeeded` on the attempt and payment exactly as read (`row_versions`: the attempt's and the payment's,
    `ATTEMPT_ROW_VERSION` / `PAYMENT_ROW_VERSION` read with them), with the merchant event, its deliveries and the
    outbox rows (store/webhooks.py) in the SAME statement, written only if both compare-and-sets matched: all or
    nothing, atomic and durable on its own, so it needs no transaction (one round trip where BEGIN, the
    compare-and-sets, the webhook's writes and COMMIT were four). Since neither row changed since it was read, they
    are written as `succeeded_records` builds them, which is what the event and webhook were built from. False when
    either row was no longer as read (nothing is written; the caller reads again and decides again)."""
    parameters = _succeeded_parameters(attempt, payment, values)
    parameters.update(attempt_row_version=row_versions[0], payment_row_version=row_versions[1])
    parameters.update(webhook_parameters(event, deliveries, outbox_rows))
    shape = webhook_shape(event, deliveries, outbox_rows)
    statement = _SETTLED.get(shape)
    if statement is None:
        statement = _SETTLED[shape] = DriverStatement(_settled_statement(shape))
    return await statement.fetchrow(conn, parameters) is not None


async def mark_attempt_failed(
    conn: AsyncConnection, attempt: AttemptRecord, *, finished_at: datetime, channel_trade_no: str | None
) -> AttemptRecord | None:
    """`attempt.status → failed`: the channel reported the trade failed."""
    values = _finished(finished_at, channel_trade_no)
    return await _move_attempt(conn, attempt.id, old=attempt.status, new=AttemptStatus.FAILED, values=values)


async def mark_attempt_closed(
    conn: AsyncConnection, attempt: AttemptRecord, *, finished_at: datetime, channel_trade_no: str | None = None
) -> AttemptRecord | None:
    """`attempt.status → closed`: closed at the channel, with its payment (merchant, expiry), or left behind by a
    payment that moved on while the attempt was `created`."""
    values = _finished(finished_at, channel_trade_no)
    return await _move_attempt(conn, attempt.id, old=attempt.status, new=AttemptStatus.CLOSED, values=values)


# ------------------------------------------------------------------------------------- polling and re-driving


async def claim_attempts_to_poll(
    conn: AsyncConnection, *, now: datetime, lease_until: datetime, limit: int
) -> list[tuple[AttemptRecord, bool]]:
    """Processing attempts whose next query is due, leased so another replica skips them meanwhile; each with its
    payment's `livemode` (the query must use the config of the payment's mode: a merchant may hold both)."""
    due = (
        select(attempts.c.id)
        .where(attempts.c.status == AttemptStatus.PROCESSING.value, attempts.c.next_poll_at <= now)
        .order_by(attempts.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        attempts.update()
        .where(attempts.c.id.in_(due), payments.c.id == attempts.c.payment_id)
        .values(next_poll_at=lease_until)
        .returning(*attempts.c, payments.c.livemode)
    )
    return [(attempt_from_row(row), row.livemode) for row in await conn.execute(statement)]


def _redrive_due(now: datetime, grace_before: datetime) -> ColumnElement[bool]:
    """A `created` attempt whose driver's lease (next_poll_at) has passed. Attempts written before leases
    existed (next_poll_at NULL) count from their creation plus the grace."""
    return and_(
        attempts.c.status == AttemptStatus.CREATED.value,
        or_(
            attempts.c.next_poll_at <= now,
            and_(attempts.c.next_poll_at.is_(None), attempts.c.created_at <= grace_before),
        ),
    )


async def claim_attempts_to_redrive(
    conn: AsyncConnection, *, now: datetime, grace_before: datetime, lease_until: datetime, limit: int
) -> list[AttemptRecord]:
    """`created` attempts nobody is driving any more (the prepay never ran, or its result was never
    written), leased to this caller until `lease_until` so a retrying client or another replica waits."""
    due = (
        select(attempts.c.id)
        .where(_redrive_due(now, grace_before))
        .order_by(attempts.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        attempts.update()
        .where(attempts.c.id.in_(due), attempts.c.status == AttemptStatus.CREATED.value)
        .values(next_poll_at=lease_until, updated_at=func.now())
        .returning(attempts)
    )
    return [attempt_from_row(row) for row in await conn.execute(statement)]


async def claim_attempt_to_redrive(
    conn: AsyncConnection, attempt_id: str, *, now: datetime, grace_before: datetime, lease_until: datetime
) -> AttemptRecord | None:
    """The same lease for one attempt (a client retrying its create); None while someone else holds it."""
    statement = (
        attempts.update()
        .where(attempts.c.id == attempt_id, _redrive_due(now, grace_before))
        .values(next_poll_at=lease_until, updated_at=func.now())
        .returning(attempts)
    )
    return attempt_or_none((await conn.execute(statement)).first())


async def schedule_attempt_poll(
    conn: AsyncConnection, attempt_id: str, *, poll_count: int, next_poll_at: datetime | None
) -> None:
    await conn.execute(
        attempts.update()
        .where(attempts.c.id == attempt_id, attempts.c.status == AttemptStatus.PROCESSING.value)
        .values(poll_count=poll_count, next_poll_at=next_poll_at, updated_at=func.now())
    )


async def list_expired_payments(conn: AsyncConnection, *, now: datetime, limit: int) -> list[PaymentRecord]:
    query = (
        select(payments)
        .where(
            payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PROCESSING.value]),
            payments.c.expire_at <= now,
            # A payment code is reversed by its attempt's poller at the deadline, never closed from here.
            payments.c.scene != PaymentScene.PAYMENT_CODE.value,
        )
        .order_by(payments.c.expire_at)
        .limit(limit)
    )
    return [payment_from_row(row) for row in await conn.execute(query)]


async def advance_deadline(conn: AsyncConnection, payment_id: str, *, now: datetime) -> bool:
    """Bring an open payment's expiry forward to `now` (a merchant cancelling a payment code at the counter:
    its poller reverses it at the next scheduled query)."""
    result = await conn.execute(
        payments.update()
        .where(
            payments.c.id == payment_id,
            payments.c.status.in_([PaymentStatus.CREATED.value, PaymentStatus.PROCESSING.value]),
            payments.c.expire_at > now,
        )
        .values(expire_at=now, updated_at=func.now())
    )
    return bool(result.rowcount)
