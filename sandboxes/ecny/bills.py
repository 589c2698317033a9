"""The e-CNY bank sandbox's daily bill (`GET /v1/bills/{yyyy-mm-dd}`, CSV), and the discrepancies a test injects into a
day's bill to make it disagree with the truth on purpose. The orders and refunds it lists are `sandbox.py`'s.
"""

from __future__ import annotations

import csv
import io
import secrets
from datetime import date, datetime
from typing import Any

from sandboxes.common.bills import discrepancies
from sandboxes.common.store import Document, DocumentStore
from sandboxes.ecny.sandbox import CHINA, ORDERS, REFUNDS, EcnyBank

BILL_COLUMNS = (
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


def _apply_discrepancies(store: DocumentStore, rows: list[list[Any]], merchant_id: str, day: date) -> list[list[Any]]:
    """Make the day's bill disagree with the truth on purpose (drop_line, change_amount, report_success)."""

    def aims(row: list[Any], item: Document) -> bool:
        if item.get("out_refund_no"):
            return bool(row[0] == "REFUND" and row[3] == item["out_refund_no"])
        return bool(row[0] == "ORDER" and row[1] == item["out_trade_no"])

    for item in discrepancies(store, day):
        if item.get("merchant_id") not in (None, merchant_id):
            continue
        if item["kind"] == "drop_line":
            rows = [row for row in rows if not aims(row, item)]
        elif item["kind"] == "change_amount":
            rows = [[*row[:5], int(item["amount_minor"]), *row[6:]] if aims(row, item) else row for row in rows]
        elif item["kind"] == "report_success":
            moment = datetime.combine(day, datetime.min.time(), CHINA).replace(hour=12).isoformat()
            rows.append(
                [
                    "ORDER",
                    item["out_trade_no"],
                    f"EC{day:%Y%m%d}120000{secrets.randbelow(10**8):08d}",
                    "",
                    "",
                    int(item["amount_minor"]),
                    0,
                    "SUCCEEDED",
                    4,
                    moment,
                ]
            )
    return rows


def bill_csv(bank: EcnyBank, merchant_id: str, day: date) -> str:
    def on_day(value: str | None) -> bool:
        return bool(value) and datetime.fromisoformat(str(value)).astimezone(CHINA).date() == day

    rows: list[list[Any]] = []
    for o in bank.store.list(ORDERS):
        if o["merchant_id"] == merchant_id and o["status"] == "SUCCEEDED" and on_day(o["paid_at"]):
            fee = (int(o["amount_minor"]) * bank.settings.fee_rate_bps + 5000) // 10000
            rows.append(
                [
                    "ORDER",
                    o["out_trade_no"],
                    o["order_no"],
                    "",
                    "",
                    o["amount_minor"],
                    fee,
                    "SUCCEEDED",
                    o["wallet_level"],
                    o["paid_at"],
                ]
            )
    for r in bank.store.list(REFUNDS):
        if r["merchant_id"] == merchant_id and r["status"] == "SUCCEEDED" and on_day(r["finished_at"]):
            rows.append(
                [
                    "REFUND",
                    r["out_trade_no"],
                    r["order_no"],
                    r["out_refund_no"],
                    r["refund_no"],
                    r["amount_minor"],
                    0,
                    "SUCCEEDED",
                    "",
                    r["finished_at"],
                ]
            )
    rows = _apply_discrepancies(bank.store, rows, merchant_id, day)
    rows.sort(key=lambda row: str(row[9]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(BILL_COLUMNS)
    writer.writerows(rows)
    paid = sum(int(r[5]) for r in rows if r[0] == "ORDER")
    refunded = sum(int(r[5]) for r in rows if r[0] == "REFUND")
    out.write(f"# total={len(rows)} paid_minor={paid} refunded_minor={refunded}\r\n")
    return out.getvalue()
