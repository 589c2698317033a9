"""The create's single statements (store/payments.py) keep the transitions they replaced: a payment is inserted with
its first attempt or not at all, and the channel's first answer moves the attempt, then its payment, each by a
compare-and-set on `created` (docs/performance.md, "Fifth pass"; docs/consistency.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.cashier.domain.payments import AttemptStatus, PaymentStatus
from services.cashier.store.merchants import read_for_create
from services.cashier.store.payments import (
    get_payment_unscoped,
    insert_payment_with_attempt,
    mark_payment_closed,
    mark_processing,
)
from services.cashier.store.tables import attempts

QR = {"type": "qr_code", "qr_code": "https://qr.example/abc"}


@pytest.fixture
async def engine(migrated_database: Any) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await migrated_database("cashier"))
    yield engine
    await engine.dispose()


def _payment(order_no: str, attempt_id: str) -> dict[str, Any]:
    return {
        "id": f"pay_{uuid.uuid4().hex}",
        "merchant_id": "mch_statements",
        "merchant_order_no": order_no,
        "request_sha256": "0" * 64,
        "amount_minor": 100,
        "currency": "CNY",
        "description": "Parking fee",
        "scene": "native_qr",
        "livemode": False,
        "status": PaymentStatus.CREATED.value,
        "expire_at": datetime.now(UTC) + timedelta(minutes=15),
        "current_attempt_id": attempt_id,
        "channel": "alipay",
    }


def _attempt(attempt_id: str) -> dict[str, Any]:
    return {
        "id": attempt_id,
        "seq": 1,
        "channel": "alipay",
        "route_id": None,
        "fee_minor": None,
        "fee_rate_bps": None,
        "out_trade_no": attempt_id.replace("_", ""),
        "status": AttemptStatus.CREATED.value,
        "next_poll_at": datetime.now(UTC) + timedelta(seconds=30),
    }


async def test_a_payment_is_inserted_with_its_first_attempt_or_not_at_all(engine: AsyncEngine) -> None:
    order_no = f"ord_{uuid.uuid4().hex[:12]}"
    async with engine.begin() as conn:
        inserted = await insert_payment_with_attempt(conn, _payment(order_no, "att_first"), _attempt("att_first"))
        assert inserted is not None
        payment, attempt = inserted
        assert (payment.current_attempt_id, attempt.payment_id, attempt.merchant_id) == (
            "att_first",
            payment.id,
            "mch_statements",
        )
        # The same order number again: no payment, and no attempt either.
        again = await insert_payment_with_attempt(conn, _payment(order_no, "att_second"), _attempt("att_second"))
        assert again is None
        assert await conn.scalar(select(func.count()).select_from(attempts)) == 1


async def test_the_first_answer_moves_the_attempt_then_its_payment_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await insert_payment_with_attempt(conn, _payment("ord_once", "att_once"), _attempt("att_once"))
        assert inserted is not None
        payment = inserted[0]
    answer: dict[str, Any] = {
        "payer_action": QR,
        "channel_trade_no": None,
        "latency_ms": 12,
        "next_poll_at": datetime.now(UTC),
    }
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        moved = await mark_processing(conn, payment_id=payment.id, attempt_id="att_once", **answer)
        assert moved is not None
        assert (moved[0].status, moved[0].payer_action) == (PaymentStatus.PROCESSING, QR)
        assert (moved[1].status, moved[1].payer_action, moved[1].latency_ms) == (AttemptStatus.PROCESSING, QR, 12)
        # A second driver's answer for the same attempt changes nothing.
        assert await mark_processing(conn, payment_id=payment.id, attempt_id="att_once", **answer) is None


async def test_a_payment_closed_meanwhile_stays_closed_while_its_attempt_records_the_answer(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        inserted = await insert_payment_with_attempt(conn, _payment("ord_closed", "att_closed"), _attempt("att_closed"))
        assert inserted is not None
        closed = await mark_payment_closed(conn, inserted[0], closed_at=datetime.now(UTC), reason="closed_by_merchant")
        assert closed is not None
    answer: dict[str, Any] = {
        "payer_action": QR,
        "channel_trade_no": None,
        "latency_ms": 5,
        "next_poll_at": datetime.now(UTC),
    }
    async with engine.begin() as conn:
        assert await mark_processing(conn, payment_id=closed.id, attempt_id="att_closed", **answer) is None
        attempt_status = await conn.scalar(select(attempts.c.status).where(attempts.c.id == "att_closed"))
    # As the two statements in one transaction left it: the attempt took the answer (a late success finds it),
    # the payment did not move.
    assert attempt_status == AttemptStatus.PROCESSING.value
    async with engine.connect() as conn:
        current = await get_payment_unscoped(conn, closed.id)
    assert current is not None and current.status == PaymentStatus.CLOSED


async def test_the_create_read_names_an_existing_order_even_without_configs(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await insert_payment_with_attempt(conn, _payment("ord_read", "att_read"), _attempt("att_read"))
        assert inserted is not None
        found = await read_for_create(conn, merchant_id="mch_statements", merchant_order_no="ord_read", mode="test")
        new = await read_for_create(conn, merchant_id="mch_statements", merchant_order_no="ord_new", mode="test")
    assert found == (inserted[0].id, [])
    assert new == (None, [])
