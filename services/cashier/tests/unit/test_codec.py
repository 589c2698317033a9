"""The money records carry every column of their table, and the transitions refuse what the state machine does."""

from __future__ import annotations

import pytest
from sqlalchemy import Table

from services.cashier.store import codec
from services.cashier.store.tables import attempts, payments, profit_sharing_orders, refunds


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
