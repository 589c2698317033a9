"""Rows ⇄ the cashier's money records (domain/records.py). One place, so every read and every transition
returns the same typed shape, and a column added to a table without its record field fails the codec's test
(tests/unit/test_codec.py) instead of silently going missing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import Row

from services.cashier.domain.payments import AttemptStatus, PaymentPurpose, PaymentScene, PaymentStatus
from services.cashier.domain.profit_sharing import ShareStatus
from services.cashier.domain.records import AttemptRecord, PaymentRecord, RefundRecord, ShareOrderRecord
from services.cashier.domain.refunds import RefundStatus

PAYMENT_FIELDS = tuple(f.name for f in fields(PaymentRecord))
ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptRecord))
REFUND_FIELDS = tuple(f.name for f in fields(RefundRecord))
SHARE_ORDER_FIELDS = tuple(f.name for f in fields(ShareOrderRecord))

# A row from SQLAlchemy, or from asyncpg directly (store/driver.py: the per-payment statements), or a mapping of
# columns (store/payments.py `payment_to_insert`); each by column name.
RowLike: TypeAlias = Row[Any] | asyncpg.Record | Mapping[str, Any]


def mapping_of(row: RowLike) -> Mapping[Any, Any]:
    """`row`'s columns by name, whichever driver layer returned it."""
    mapping: Mapping[Any, Any] = row._mapping if isinstance(row, Row) else row
    return mapping


def _columns(row: RowLike, names: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    """The record's fields of `row` by name (a row may carry more columns: an attempt with its payment's mode);
    with `prefix`, from the columns so labelled (a row carrying two records: store/payments.py's
    `mark_processing` returns the attempt's and the payment's side by side)."""
    mapping = mapping_of(row)
    return {name: mapping[prefix + name] for name in names}


def payment_from_row(row: RowLike, prefix: str = "") -> PaymentRecord:
    values = _columns(row, PAYMENT_FIELDS, prefix)
    enums = {
        "status": PaymentStatus(values["status"]),
        "scene": PaymentScene(values["scene"]),
        "purpose": PaymentPurpose(values["purpose"]),
    }
    return PaymentRecord(**(values | enums))


def attempt_from_row(row: RowLike, prefix: str = "") -> AttemptRecord:
    values = _columns(row, ATTEMPT_FIELDS, prefix)
    return AttemptRecord(**(values | {"status": AttemptStatus(values["status"])}))


def refund_from_row(row: Row[Any]) -> RefundRecord:
    values = _columns(row, REFUND_FIELDS)
    return RefundRecord(**(values | {"status": RefundStatus(values["status"])}))


def share_order_from_row(row: Row[Any]) -> ShareOrderRecord:
    values = _columns(row, SHARE_ORDER_FIELDS)
    return ShareOrderRecord(**(values | {"status": ShareStatus(values["status"])}))


def payment_or_none(row: Row[Any] | None) -> PaymentRecord | None:
    return None if row is None else payment_from_row(row)


def attempt_or_none(row: Row[Any] | None) -> AttemptRecord | None:
    return None if row is None else attempt_from_row(row)


def refund_or_none(row: Row[Any] | None) -> RefundRecord | None:
    return None if row is None else refund_from_row(row)


def share_order_or_none(row: Row[Any] | None) -> ShareOrderRecord | None:
    return None if row is None else share_order_from_row(row)
