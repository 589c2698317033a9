"""The e-CNY bank's daily bill (docs/protocols/ecny.md §6): UTF-8 CSV → base.BillLine.

Header `type,out_trade_no,order_no,out_refund_no,refund_no,amount_minor,fee_minor,status,wallet_level,
finished_at`; `type` is ORDER or REFUND; amounts are integer fen; a `#` line at the end sums the day.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime

from services.cashier.connectors.base import Bill, BillLine, BillLineKind

COLUMNS = (
    "type",
    "out_trade_no",
    "order_no",
    "out_refund_no",
    "refund_no",
    "amount_minor",
    "fee_minor",
    "status",
    "wallet_level",
    "finished_at",
)
BILL_ROWS_MAX = 2_000_000


class BillFormatError(ValueError):
    """A bill that cannot be read."""


def _int(value: str, what: str) -> int:
    text = value.strip()
    if not text.lstrip("-").isdigit():
        raise BillFormatError(f"{what} is not an integer: {value!r}")
    return int(text)


def parse_bill(raw: bytes, bill_date: date) -> Bill:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BillFormatError("bill is not UTF-8") from exc
    rows = [row for row in csv.reader(io.StringIO(text)) if row and not row[0].startswith("#")]
    if not rows or tuple(rows[0]) != COLUMNS:
        raise BillFormatError(f"unexpected bill header {rows[0] if rows else None!r}")
    if len(rows) > BILL_ROWS_MAX:
        raise BillFormatError("bill has too many rows")
    lines: list[BillLine] = []
    for row in rows[1:]:
        if len(row) != len(COLUMNS):
            raise BillFormatError(f"bill row with {len(row)} cells")
        cell = dict(zip(COLUMNS, row, strict=True))
        try:
            occurred_at = datetime.fromisoformat(cell["finished_at"])
        except ValueError as exc:
            raise BillFormatError(f"bad finished_at {cell['finished_at']!r}") from exc
        kind = {"ORDER": BillLineKind.PAYMENT, "REFUND": BillLineKind.REFUND}.get(cell["type"])
        if kind is None:
            continue
        lines.append(
            BillLine(
                kind=kind,
                out_trade_no=cell["out_trade_no"],
                channel_trade_no=cell["order_no"],
                amount_minor=_int(cell["amount_minor"], "amount_minor"),
                fee_minor=_int(cell["fee_minor"], "fee_minor"),
                status=cell["status"],
                occurred_at=occurred_at,
                out_refund_no=cell["out_refund_no"] or None,
                channel_refund_no=cell["refund_no"] or None,
                extra={"wallet_level": cell["wallet_level"]},
            )
        )
    return Bill(bill_date=bill_date, lines=lines, raw_sha1=hashlib.sha1(raw).hexdigest())
