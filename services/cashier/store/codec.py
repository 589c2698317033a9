"""Rows ⇄ the cashier's money records (domain/records.py). One place, so every read and every transition
returns the same typed shape, and a column added to a table without its record field fails the codec's test
(tests/unit/test_codec.py) instead of silently going missing."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import Row

from services.cashier.domain.payments import AttemptStatus, PaymentPurpose, PaymentScene, PaymentStatus
from services.cashier.domain.profit_sharing import ShareStatus
from services.cashier.domain.records import AttemptRecord, PaymentRecord, RefundRecord, ShareOrderRecord
from services.cashier.domain.refunds import RefundStatus

PAYMENT_FIELDS = tuple(f.name for f in fields(PaymentRecord))
ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptRecord))
REFUND_FIELDS = tuple(f.name for f in fields(RefundRecord))
SHARE_ORDER_FIELDS = tuple(f.name for f in fields(ShareOrderRecord))


def payment_from_row(row: Row[Any]) -> PaymentRecord:
    m = row._mapping
    values = {name: m[name] for name in PAYMENT_FIELDS}
    values["status"] = PaymentStatus(values["status"])
    values["scene"] = PaymentScene(values["scene"])
    values["purpose"] = PaymentPurpose(values["purpose"])
    return PaymentRecord(**values)


def attempt_from_row(row: Row[Any]) -> AttemptRecord:
    """Also reads a row with more columns (an attempt joined with its payment's `livemode`)."""
    m = row._mapping
    values = {name: m[name] for name in ATTEMPT_FIELDS}
    values["status"] = AttemptStatus(values["status"])
    return AttemptRecord(**values)


def refund_from_row(row: Row[Any]) -> RefundRecord:
    m = row._mapping
    values = {name: m[name] for name in REFUND_FIELDS}
    values["status"] = RefundStatus(values["status"])
    return RefundRecord(**values)


def share_order_from_row(row: Row[Any]) -> ShareOrderRecord:
    m = row._mapping
    values = {name: m[name] for name in SHARE_ORDER_FIELDS}
    values["status"] = ShareStatus(values["status"])
    return ShareOrderRecord(**values)


def payment_or_none(row: Row[Any] | None) -> PaymentRecord | None:
    return None if row is None else payment_from_row(row)


def attempt_or_none(row: Row[Any] | None) -> AttemptRecord | None:
    return None if row is None else attempt_from_row(row)


def refund_or_none(row: Row[Any] | None) -> RefundRecord | None:
    return None if row is None else refund_from_row(row)


def share_order_or_none(row: Row[Any] | None) -> ShareOrderRecord | None:
    return None if row is None else share_order_from_row(row)
