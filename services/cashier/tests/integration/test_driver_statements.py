"""The per-payment statements on asyncpg directly (store/driver.py) behave as through SQLAlchemy: inside a unit of
work's transaction even when they are its first statement (SQLAlchemy begins lazily), and their rows decode to the
same records, JSON included (docs/performance.md, "Sixth pass: the cashier's statements on asyncpg")."""

from __future__ import annotations

import asyncio
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
from services.cashier.events import PAYMENT_CREATED, PAYMENTS_TOPIC, payment_event_data
from services.cashier.store.payments import (
    get_attempt,
    get_payment_unscoped,
    insert_payment_with_attempt,
    payment_to_insert,
)
from services.cashier.store.tables import payments, webhook_deliveries
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
            event: dict[str, Any] = {
                "id": envelope.id,
                "merchant_id": "mch_driver",
                "type": envelope.type,
                "payment_id": envelope.subject,
                "livemode": False,
                "payload": {},
                "created_at": datetime.now(UTC),
            }
            delivery = {
                "id": f"whd_{uuid.uuid4().hex}",
                "merchant_id": "mch_driver",
                "payment_id": envelope.subject,
                "event_id": envelope.id,
                "event_type": envelope.type,
                "url": "https://merchant.example/hook",
                "body": "{}",
                "next_attempt_at": datetime.now(UTC),
            }
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
