"""The per-payment statements on asyncpg directly (store/driver.py) behave as through SQLAlchemy: inside a unit of
work's transaction even when they are its first statement (SQLAlchemy begins lazily), and their rows decode to the
same records, JSON included (docs/performance.md, "Sixth pass: the cashier's statements on asyncpg")."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import UnitOfWork, asyncpg_dsn, create_engine, new_envelope, outbox_row
from libs.common.events import Envelope
from libs.common.outbox_tables import NOTIFY_CHANNEL, outbox
from services.cashier.domain.payments import AttemptStatus, PaymentStatus
from services.cashier.domain.records import AttemptRecord, PaymentRecord
from services.cashier.events import PAYMENT_CREATED, PAYMENT_SUCCEEDED, PAYMENTS_TOPIC, payment_event_data
from services.cashier.store.notifications import NotifiedAttempt, get_notified_attempt
from services.cashier.store.payments import (
    SuccessValues,
    get_attempt,
    get_payment_unscoped,
    insert_payment_with_attempt,
    payment_to_insert,
    settle_succeeded,
    succeeded_records,
)
from services.cashier.store.tables import attempts, merchant_events, payments, webhook_deliveries
from services.cashier.store.webhooks import insert_event_with_deliveries


@pytest.fixture
async def engine(migrated_database: Any) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(await migrated_database("cashier"))
    yield engine
    await engine.dispose()


def _rows() -> tuple[dict[str, Any], dict[str, Any]]:
    attempt_id = f"att_{uuid.uuid4().hex}"
    payment = {
        "id": f"pay_{uuid.uuid4().hex}",
        "merchant_id": "mch_driver",
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:12]}",
        "request_sha256": "0" * 64,
        "amount_minor": 1999,
        "currency": "CNY",
        "description": "Canteen lunch",
        "scene": "native_qr",
        "payer": {"user_id": "u_1", "client_ip": "203.0.113.9"},
        "metadata": {"business_line": "canteen", "nested": {"n": [1, 2]}},
        "split": None,  # as the create passes it without a split: stored as JSON null, as through SQLAlchemy
        "livemode": False,
        "status": PaymentStatus.CREATED.value,
        "expire_at": datetime.now(UTC) + timedelta(minutes=15),
        "current_attempt_id": attempt_id,
        "channel": "alipay",
    }
    attempt = {
        "id": attempt_id,
        "seq": 1,
        "channel": "alipay",
        "route_id": "rt_1",
        "fee_minor": 12,
        "fee_rate_bps": 60,
        "out_trade_no": attempt_id.replace("_", ""),
        "status": AttemptStatus.CREATED.value,
        "next_poll_at": datetime.now(UTC) + timedelta(seconds=30),
    }
    return payment, attempt


async def test_a_first_statement_on_asyncpg_is_inside_the_unit_of_work(engine: AsyncEngine) -> None:
    uow = UnitOfWork(engine, source="cashier")
    payment_values, attempt_values = _rows()
    with pytest.raises(RuntimeError):
        async with uow.begin() as tx:
            assert await insert_payment_with_attempt(tx.conn, payment_values, attempt_values) is not None
            raise RuntimeError("the unit of work fails after the statement")
    async with uow.read() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(payments).where(payments.c.id == payment_values["id"])
        )
    assert count == 0  # rolled back with the unit of work

    async with uow.begin() as tx:
        inserted = await insert_payment_with_attempt(tx.conn, payment_values, attempt_values)
    assert inserted is not None
    written, attempt = inserted
    async with uow.read() as conn:
        # The same rows read back through SQLAlchemy decode to the same records.
        assert await get_payment_unscoped(conn, written.id) == written
        assert await get_attempt(conn, attempt.id) == attempt
        json_null = await conn.scalar(
            text("SELECT jsonb_typeof(split) FROM payments WHERE id = :id"), {"id": written.id}
        )
    assert json_null == "null"
    assert written.payer == payment_values["payer"] and written.metadata == payment_values["metadata"]
    assert written.created_at.tzinfo is not None


async def test_the_insert_writes_its_event_with_the_payment_or_not_at_all(engine: AsyncEngine) -> None:
    uow = UnitOfWork(engine, source="cashier")
    payment_values, attempt_values = _rows()
    payment_values["expire_at"] = payment_values["expire_at"].astimezone(timezone(timedelta(hours=8)))
    draft = payment_to_insert(payment_values, now=datetime.now(UTC))
    envelope = new_envelope("cashier", type=PAYMENT_CREATED, subject=draft.id, data=payment_event_data(draft))
    async with uow.autocommit() as conn:
        inserted = await insert_payment_with_attempt(
            conn, payment_values, attempt_values, event=outbox_row(PAYMENTS_TOPIC, envelope)
        )
    assert inserted is not None
    written, _attempt = inserted
    # The record built before the insert is the row written (but the times the database set itself), so the event is
    # the one the written row gives.
    assert dataclasses.replace(draft, created_at=written.created_at, updated_at=written.updated_at) == written
    assert payment_event_data(written) == envelope.data

    again = dict(payment_values, id=f"pay_{uuid.uuid4().hex}")  # the same order number: nothing is written
    other = new_envelope("cashier", type=PAYMENT_CREATED, subject=again["id"], data={})
    async with uow.autocommit() as conn:
        second = await insert_payment_with_attempt(
            conn, again, dict(attempt_values, id="att_again", out_trade_no="attagain"), event=outbox_row("p", other)
        )
        assert second is None
        rows = (await conn.execute(select(outbox.c.event_id, outbox.c.payload).where(outbox.c.key == written.id))).all()
        assert (await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.key == again["id"]))) == 0
    assert [(row.event_id, Envelope.from_bytes(row.payload).data) for row in rows] == [(envelope.id, envelope.data)]


async def test_outbox_rows_written_by_a_cte_wake_the_relay(engine: AsyncEngine) -> None:
    """The event's outbox row written by the webhook event's statement (`Tx.take_outbox_rows`) commits with it, and
    an outbox row inserted by a data-modifying CTE fires the table's statement trigger: the relay is woken."""
    payment_values, attempt_values = _rows()
    uow = UnitOfWork(engine, source="cashier")
    async with uow.autocommit() as conn:
        inserted = await insert_payment_with_attempt(conn, payment_values, attempt_values)
    assert inserted is not None
    listener = await asyncpg.connect(asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    woken: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: woken.put_nowait(args[3]))
    try:
        async with uow.begin() as tx:
            envelope = tx.publish(topic=PAYMENTS_TOPIC, type="payment.succeeded", subject=payment_values["id"], data={})
            event, delivery = _webhook_rows(envelope)
            await insert_event_with_deliveries(tx.conn, event, [delivery], outbox_rows=tx.take_outbox_rows())
        await asyncio.wait_for(woken.get(), timeout=30)
    finally:
        await listener.close()
    async with uow.read() as conn:
        published = (await conn.execute(select(outbox.c.event_id).where(outbox.c.key == envelope.subject))).scalars()
        assert list(published) == [envelope.id]  # written once: by the event's statement, not again by the flush
        assert (
            await conn.scalar(
                select(func.count()).select_from(webhook_deliveries).where(webhook_deliveries.c.event_id == envelope.id)
            )
            == 1
        )


async def test_a_notified_success_is_one_statement_written_as_built_or_not_at_all(engine: AsyncEngine) -> None:
    """`settle_succeeded` (a notification's usual success, flows/outcomes.py): the records built before it
    (`succeeded_records`) are the rows it writes (but the update time the database sets), and the event, the merchant
    event, its delivery and the outbox row are written with them; when either row changed since it was read, nothing
    is written at all (the notification reads again and decides again)."""
    uow = UnitOfWork(engine, source="cashier")
    out_trade_no = await _processing_payment(uow)
    stale = await _read(uow, out_trade_no)
    async with uow.autocommit() as conn:  # the payment changes after the read, not its status
        await conn.execute(payments.update().where(payments.c.id == stale.payment.id).values(description="Lunch"))
    refused, envelope, _attempt, _payment = await _settle(uow, stale)
    assert not refused
    async with uow.read() as conn:
        unchanged = await get_payment_unscoped(conn, stale.payment.id)
        assert unchanged is not None and unchanged.status is PaymentStatus.PROCESSING
        assert await _written_for(conn, stale.payment.id) == (0, 0, 0)

    found = await _read(uow, out_trade_no)
    written, envelope, attempt, payment = await _settle(uow, found)
    assert written
    async with uow.read() as conn:
        paid = await get_payment_unscoped(conn, payment.id)
        moved = await get_attempt(conn, attempt.id)
        assert await _written_for(conn, payment.id) == (1, 1, 1)
        published = (await conn.execute(select(outbox.c.payload).where(outbox.c.key == payment.id))).scalar_one()
    assert paid is not None and moved is not None
    assert dataclasses.replace(payment, updated_at=paid.updated_at) == paid
    assert dataclasses.replace(attempt, updated_at=moved.updated_at) == moved
    assert Envelope.from_bytes(published).data == envelope.data
    assert envelope.data == payment_event_data(paid, moved, outcome=paid.status, source="notification")

    again, *_ = await _settle(uow, found)  # the same notification again, on the rows as first read: nothing more
    assert not again
    async with uow.read() as conn:
        assert await _written_for(conn, payment.id) == (1, 1, 1)


@pytest.mark.parametrize("writer_commits", [True, False])
async def test_a_notified_success_waiting_on_a_writer_applies_only_if_the_writer_changed_nothing(
    engine: AsyncEngine, writer_commits: bool
) -> None:
    """A notification's statement that meets a row locked by a transaction in flight (the poller's, a close) waits
    for it, then checks the row's version again on the row as that transaction left it (READ COMMITTED's re-check
    of a locked row): a committed change of the attempt alone writes nothing at all, the payment included; a rolled
    back one leaves the rows as read, and the success is written once. Two replicas settling the same read at once
    write it once."""
    uow = UnitOfWork(engine, source="cashier")
    out_trade_no = await _processing_payment(uow)
    found = await _read(uow, out_trade_no)
    with contextlib.suppress(_RolledBack):
        async with uow.begin() as tx:  # the poller's next poll time: the attempt changes, not its status
            await tx.conn.execute(
                attempts.update()
                .where(attempts.c.id == found.attempt.id)
                .values(next_poll_at=datetime.now(UTC) + timedelta(seconds=60))
            )
            settling = asyncio.create_task(_settle(uow, found))
            await _until_waiting_for_a_lock(uow)
            assert not settling.done()
            if not writer_commits:
                raise _RolledBack
    written, *_ = await settling
    assert written is not writer_commits
    async with uow.read() as conn:
        payment = await get_payment_unscoped(conn, found.payment.id)
        attempt = await get_attempt(conn, found.attempt.id)
        assert payment is not None and attempt is not None
        expected = (0, 0, 0) if writer_commits else (1, 1, 1)
        assert await _written_for(conn, payment.id) == expected
    assert (payment.status, attempt.status) == (
        (PaymentStatus.PROCESSING, AttemptStatus.PROCESSING)
        if writer_commits
        else (PaymentStatus.SUCCEEDED, AttemptStatus.SUCCEEDED)
    )

    if writer_commits:  # the notification read again: two replicas apply it at once, one writes it
        found = await _read(uow, out_trade_no)
        results = await asyncio.gather(_settle(uow, found), _settle(uow, found))
        assert sorted(written for written, *_ in results) == [False, True]
        async with uow.read() as conn:
            assert await _written_for(conn, found.payment.id) == (1, 1, 1)


class _RolledBack(Exception):
    """Rolls the writer's transaction back."""


async def _processing_payment(uow: UnitOfWork) -> str:
    """A payment and its attempt as the prepay's answer left them (processing); the attempt's out_trade_no."""
    payment_values, attempt_values = _rows()
    payment_values["status"] = PaymentStatus.PROCESSING.value
    attempt_values["status"] = AttemptStatus.PROCESSING.value
    async with uow.autocommit() as conn:
        assert await insert_payment_with_attempt(conn, payment_values, attempt_values) is not None
    return str(attempt_values["out_trade_no"])


async def _read(uow: UnitOfWork, out_trade_no: str) -> NotifiedAttempt:
    async with uow.read() as conn:
        found = await get_notified_attempt(conn, merchant_id="mch_driver", channel="alipay", out_trade_no=out_trade_no)
    assert found is not None
    return found


async def _settle(uow: UnitOfWork, found: NotifiedAttempt) -> tuple[bool, Envelope, AttemptRecord, PaymentRecord]:
    """`settle_succeeded` of a channel's success on the rows as `found`, with its event, webhook and outbox row."""
    succeeded: SuccessValues = {
        "finished_at": datetime.now(UTC),
        "channel_trade_no": "2026120722001",
        "succeeded_at": datetime.now(timezone(timedelta(hours=8))),  # a channel's time, in its own zone
        "late_success": False,
        "channel_discount": {"discount_minor": 5, "coupons": [{"id": "c1", "amount_minor": 5}]},
        "wallet_split": None,
    }
    attempt, payment = succeeded_records(found.attempt, found.payment, **succeeded)
    data = payment_event_data(payment, attempt, outcome=payment.status, source="notification")
    envelope = new_envelope("cashier", type=PAYMENT_SUCCEEDED, subject=payment.id, data=data)
    event, delivery = _webhook_rows(envelope)
    async with uow.autocommit() as conn:
        written = await settle_succeeded(
            conn,
            found.attempt,
            found.payment,
            row_versions=found.row_versions,
            **succeeded,
            event=event,
            deliveries=[delivery],
            outbox_rows=[outbox_row(PAYMENTS_TOPIC, envelope)],
        )
    return written, envelope, attempt, payment


async def _until_waiting_for_a_lock(uow: UnitOfWork) -> None:
    """Until a backend of this database waits for a row lock (the statement under test)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(500):
        async with uow.read() as conn:
            if await conn.scalar(waiting):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the statement never waited for the row lock")


def _webhook_rows(envelope: Envelope) -> tuple[dict[str, Any], dict[str, Any]]:
    event = {
        "id": envelope.id,
        "merchant_id": "mch_driver",
        "type": envelope.type,
        "payment_id": envelope.subject,
        "livemode": False,
        "payload": {"id": envelope.id},
        "created_at": datetime.now(UTC),
    }
    delivery = {
        "id": f"whd_{uuid.uuid4().hex}",
        "merchant_id": "mch_driver",
        "payment_id": envelope.subject,
        "event_id": envelope.id,
        "event_type": envelope.type,
        "url": "https://merchant.example/hook",
        "endpoint_id": None,
        "body": "{}",
        "next_attempt_at": datetime.now(UTC),
    }
    return event, delivery


async def _written_for(conn: Any, payment_id: str) -> tuple[int, int, int]:
    """The outbox rows, merchant events and webhook deliveries of a payment."""

    async def count(table: Any, column: Any) -> int:
        return int(await conn.scalar(select(func.count()).select_from(table).where(column == payment_id)))

    return (
        await count(outbox, outbox.c.key),
        await count(merchant_events, merchant_events.c.payment_id),
        await count(webhook_deliveries, webhook_deliveries.c.payment_id),
    )
