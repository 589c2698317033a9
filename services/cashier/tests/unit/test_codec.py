"""The money records carry every column of their table, and the transitions refuse what the state machine does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import pytest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from services.cashier.domain.payments import AttemptStatus, PaymentStatus
from services.cashier.domain.records import AttemptRecord, PaymentRecord, RefundRecord
from services.cashier.domain.refunds import RefundStatus
from services.cashier.store import codec
from services.cashier.store.payments import mark_attempt_failed, mark_payment_closed
from services.cashier.store.refunds import mark_refund_failed
from services.cashier.store.tables import attempts, payments, profit_sharing_orders, refunds

RecordT = TypeVar("RecordT")


@pytest.mark.parametrize(
    ("table", "record_fields"),
    [
        (payments, codec.PAYMENT_FIELDS),
        (attempts, codec.ATTEMPT_FIELDS),
        (refunds, codec.REFUND_FIELDS),
        (profit_sharing_orders, codec.SHARE_ORDER_FIELDS),
    ],
)
def test_a_record_has_one_field_per_column(table: Table, record_fields: tuple[str, ...]) -> None:
    assert sorted(record_fields) == sorted(column.name for column in table.columns)


def _record(kind: type[RecordT], names: tuple[str, ...], **fields: Any) -> RecordT:
    """A record with every field None but `fields`: enough for a transition that must refuse before any I/O."""
    values: dict[str, Any] = dict.fromkeys(names)
    values.update(fields)
    return kind(**values)


async def test_a_transition_the_state_machine_forbids_is_refused_before_anything_is_written() -> None:
    """The named transitions check domain/'s state machine first: no connection is even touched (None here)."""
    no_connection = cast(AsyncConnection, None)
    now = datetime.now(UTC)
    paid = _record(PaymentRecord, codec.PAYMENT_FIELDS, id="pay_1", status=PaymentStatus.SUCCEEDED)
    with pytest.raises(ValueError, match="cannot move from succeeded to closed"):
        await mark_payment_closed(no_connection, paid, closed_at=now, reason="expired")
    done = _record(AttemptRecord, codec.ATTEMPT_FIELDS, id="att_1", status=AttemptStatus.SUCCEEDED)
    with pytest.raises(ValueError, match="cannot move from succeeded to failed"):
        await mark_attempt_failed(no_connection, done, finished_at=now, channel_trade_no=None)
    refunded = _record(RefundRecord, codec.REFUND_FIELDS, id="re_1", status=RefundStatus.SUCCEEDED)
    with pytest.raises(ValueError, match="cannot move from succeeded to failed"):
        await mark_refund_failed(
            no_connection, refunded, failure_code="channel_failed", failure_message=None, channel_refund_no=None
        )
