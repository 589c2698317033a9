"""The UnionPay sandbox's settlement (ZM) file, served by `fileTransRequest.do` (txnType 76), and the
discrepancies a test injects into a day's file to make it disagree with the truth on purpose.

docs/protocols/unionpay.md describes the file; the transactions it lists are `sandbox.py`'s.
"""

from __future__ import annotations

import base64
import io
import secrets
import zipfile
import zlib
from datetime import date

from sandboxes.common.bills import discrepancies
from sandboxes.common.store import Document
from sandboxes.unionpay.sandbox import SUCCESS, TXNS, UnionPay

DISCREPANCY_KINDS = ("drop_line", "change_amount", "report_success")


def _order_id(number: str) -> str:
    return number.rpartition("_")[2]


def _aims_at(txn: Document, item: Document) -> bool:
    """A discrepancy names the consume by `out_trade_no`, or one of its refunds/revokes by `out_refund_no`."""
    if item.get("out_refund_no"):
        return txn["txn_type"] in ("04", "31") and txn["order_id"] == _order_id(item["out_refund_no"])
    return txn["txn_type"] == "01" and txn["order_id"] == _order_id(item["out_trade_no"])


def apply_discrepancies(rows: list[Document], items: list[Document], mer_id: str, day: date) -> list[Document]:
    """Make the day's file disagree with the truth on purpose, for reconciliation tests."""
    for item in items:
        if item.get("mer_id") not in (None, mer_id):
            continue
        if item["kind"] == "drop_line":
            rows = [t for t in rows if not _aims_at(t, item)]
        elif item["kind"] == "change_amount":
            rows = [{**t, "amount": int(item["amount_minor"])} if _aims_at(t, item) else t for t in rows]
        elif item["kind"] == "report_success":  # a consume UnionPay says succeeded that the merchant never saw
            rows.append(
                {
                    "mer_id": mer_id,
                    "order_id": _order_id(item["out_trade_no"]),
                    "txn_type": "01",
                    "amount": int(item["amount_minor"]),
                    "status": SUCCESS,
                    "trace_no": "999999",
                    "trace_time": f"{day:%m%d}120000",
                    "acc_no": "621626*****0018",
                    "card_type": "01",
                    "query_id": f"{day:%y%m%d}120000{secrets.randbelow(10**9):09d}",
                }
            )
    return rows


def zm_lines(unionpay: UnionPay, mer_id: str, day: date) -> list[str]:
    """The ZM file: successful consumes (S22), revokes (S30) and refunds (S31) settled on `day`,
    with the discrepancies injected for that day (drop_line, change_amount, report_success)."""
    rows = [
        t
        for t in unionpay.store.list(TXNS)
        if t["mer_id"] == mer_id and t["status"] == SUCCESS and t.get("settle_date") == day.isoformat()
    ]
    rows = apply_discrepancies(rows, discrepancies(unionpay.store, day), mer_id, day)
    rows.sort(key=lambda t: (t["trace_time"], t["trace_no"]))
    lines = []
    for t in rows:
        code = {"01": "S22", "31": "S30", "04": "S31"}[t["txn_type"]]
        if t["txn_type"] == "01":
            fee, settle = f"D{unionpay.fee_of(t['amount']):012d}", f"C{t['amount'] - unionpay.fee_of(t['amount']):012d}"
        elif t["txn_type"] == "31":  # a revoke returns the whole fee
            fee, settle = f"C{t['orig_fee']:012d}", f"D{t['amount'] - t['orig_fee']:012d}"
        else:  # a refund (退货) does not return the fee
            fee, settle = f"C{0:012d}", f"D{t['amount']:012d}"
        cells = [
            (code, 3),
            ("48020000", 11),
            ("48020000", 11),
            (t["trace_no"], 6),
            (t["trace_time"], 10),
            (t.get("acc_no") or "", 19),
            (f"{t['amount']:012d}", 12),
            ("5411", 4),
            ("07", 2),
            (t["query_id"], 21),
            ("00", 2),
            (t["order_id"], 32),
            (t.get("card_type") or "", 2),
            (t.get("orig_trace_no") or "", 6),
            (t.get("orig_trace_time") or "", 10),
            (fee, 13),
            (settle, 13),
            ("0001", 6),
            ("", 15),
            (t["txn_type"], 2),
            ("01" if t["txn_type"] == "01" else "00", 2),
            ("000201", 6),
            ("01", 2),
            ("", 2),
            ("", 20),
            ("0", 1),
            (t.get("orig_query_id") or "", 21),
            (mer_id, 15),
        ]
        lines.append(" ".join(value.ljust(width)[:width] for value, width in cells))
    return lines


def settlement_file(unionpay: UnionPay, mer_id: str, day: date) -> tuple[str, str]:
    """(fileName, fileContent): Base64(zlib(zip)) holding INN<yyMMdd>01ZM_<merId> (GBK, CRLF)."""
    name = f"INN{day:%y%m%d}01ZM_{mer_id}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, "".join(line + "\r\n" for line in zm_lines(unionpay, mer_id, day)).encode("gbk"))
    return f"{day:%Y%m%d}_{mer_id}.zip", base64.b64encode(zlib.compress(buffer.getvalue())).decode()
