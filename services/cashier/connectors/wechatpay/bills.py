"""WeChat Pay trade bill: parse the ALL / SUCCESS / REFUND formats into base.BillLine.

Tolerant by design (docs/protocols/wechatpay.md §10 is [M]): columns are found by header name, not position;
a UTF-8 BOM, `\\r\\n` or `\\n` line ends, and stray spaces are accepted; every data field may or
may not carry its leading backtick. Money is converted with integer arithmetic only.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from services.cashier.connectors.base import Bill, BillLine, BillLineKind

CST = timezone(timedelta(hours=8))
SUMMARY_FIRST_COLUMN = "总交易单数"
_YUAN = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?")
_YUAN_E5 = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,5}))?")
_EMPTY_REFS = {"", "0"}


class BillFormatError(ValueError):
    """The bill text does not look like a WeChat Pay trade bill."""


def yuan_to_fen(text: str) -> int:
    """`"88.88"` → 8888, `"-0.5"` → -50, `"3"` → 300. More than 2 decimals is an error, never rounded."""
    match = _YUAN.fullmatch(text.strip())
    if match is None:
        raise BillFormatError(f"not a yuan amount: {text!r}")
    sign, whole, fraction = match.groups()
    fen = int(whole) * 100 + int((fraction or "").ljust(2, "0"))
    return -fen if sign else fen


def fee_to_fen(text: str) -> int:
    """A fee with up to 5 decimals of yuan (`"0.04500"`) → fen, rounded half-up (away from zero)."""
    match = _YUAN_E5.fullmatch(text.strip())
    if match is None:
        raise BillFormatError(f"not a fee amount: {text!r}")
    sign, whole, fraction = match.groups()
    units = int(whole) * 100_000 + int((fraction or "").ljust(5, "0"))  # 1e-5 yuan = 1e-3 fen
    fen = (units + 500) // 1000
    return -fen if sign and fen else fen


def _split_row(line: str) -> list[str]:
    """Split a data line on `,` + backtick (values may contain commas); strip the backticks."""
    stripped = line.strip()
    if stripped.startswith("`"):
        return [value.strip() for value in stripped[1:].split(",`")]
    return [value.strip().lstrip("`") for value in stripped.split(",")]


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)


def parse_trade_bill(text: str | bytes, bill_date: date, *, raw_sha1: str | None = None) -> Bill:
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        return Bill(bill_date=bill_date, lines=[], raw_sha1=raw_sha1)
    header = [name.strip().lstrip("\ufeff") for name in lines[0].split(",")]
    if "商户订单号" not in header or "交易时间" not in header:
        raise BillFormatError("missing the trade bill header line")
    result: list[BillLine] = []
    for line in lines[1:]:
        if line.strip().startswith(SUMMARY_FIRST_COLUMN):
            break  # summary header; the summary line follows and is not a trade
        values = _split_row(line)
        if len(values) != len(header):
            raise BillFormatError(f"row has {len(values)} fields, header has {len(header)}: {line[:80]!r}")
        result.append(_to_line(dict(zip(header, values, strict=True))))
    return Bill(bill_date=bill_date, lines=result, raw_sha1=raw_sha1)


def _to_line(row: dict[str, str]) -> BillLine:
    refund_no = row.get("商户退款单号", "")
    is_refund = row.get("交易状态") == "REFUND" or refund_no not in _EMPTY_REFS
    fee_minor = fee_to_fen(row.get("手续费") or "0")
    if is_refund:
        refund_amount = row.get("退款金额") or row.get("申请退款金额") or "0"
        occurred = row.get("退款成功时间") or row.get("交易时间", "")
        return BillLine(
            kind=BillLineKind.REFUND,
            out_trade_no=row["商户订单号"],
            channel_trade_no=row.get("微信订单号", ""),
            amount_minor=abs(yuan_to_fen(refund_amount)),
            fee_minor=fee_minor,
            status=row.get("退款状态") or row.get("交易状态", ""),
            occurred_at=_parse_time(occurred),
            out_refund_no=refund_no or None,
            channel_refund_no=row.get("微信退款单号") or None,
            extra=row,
        )
    return BillLine(
        kind=BillLineKind.PAYMENT,
        out_trade_no=row["商户订单号"],
        channel_trade_no=row.get("微信订单号", ""),
        amount_minor=yuan_to_fen(row.get("应结订单金额") or row.get("订单金额") or "0"),
        fee_minor=fee_minor,
        status=row.get("交易状态", ""),
        occurred_at=_parse_time(row["交易时间"]),
        extra=row,
    )
