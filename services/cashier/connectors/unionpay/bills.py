"""UnionPay daily settlement file (对账文件): file transfer answer → base.BillLine (docs/protocols/unionpay.md §7).

The file transfer transaction (txnType 76, fileType 00, settleDate MMDD) answers `fileContent` =
Base64(zlib-deflate(zip)), as the official SDK's `deCodeFileContent` reads it. The zip holds, among
others, the merchant transaction file `INN<yyMMdd>01ZM_<merId>`: one transaction per line, fixed
width fields separated by one space, GBK. The columns read here are `ZM_FIELDS` (name, width), the
leading columns of the 全渠道 ZM layout; extra trailing columns are ignored. Amounts are fen, 12
digits; fee and settlement amounts carry a direction letter (`C` credit / `D` debit, merchant side).
Transaction codes are `S22` consume, `S30` revoke, `S31` refund; other codes produce no BillLine.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import io
import zipfile
import zlib
from datetime import date, datetime

from services.cashier.connectors.base import Bill, BillLine, BillLineKind
from services.cashier.connectors.unionpay.models import BEIJING, TIME_FORMAT

ZM_FIELDS: tuple[tuple[str, int], ...] = (
    ("txnCode", 3),
    ("acqInsCode", 11),
    ("sendInsCode", 11),
    ("traceNo", 6),
    ("traceTime", 10),
    ("accNo", 19),
    ("txnAmt", 12),
    ("merCatCode", 4),
    ("termType", 2),
    ("queryId", 21),
    ("payTypeOld", 2),
    ("orderId", 32),
    ("payCardType", 2),
    ("origTraceNo", 6),
    ("origTraceTime", 10),
    ("merFee", 13),
    ("settleAmt", 13),
    ("payType", 6),
    ("groupMerId", 15),
    ("txnType", 2),
    ("txnSubType", 2),
    ("bizType", 6),
    ("accType", 2),
    ("billType", 2),
    ("billNo", 20),
    ("interactMode", 1),
    ("origQueryId", 21),
    ("merId", 15),
)
CODE_CONSUME, CODE_REVOKE, CODE_REFUND = "S22", "S30", "S31"
FILE_UNZIPPED_MAX_BYTES = 256 * 1024 * 1024
FILE_COMPRESSED_MAX_BYTES = 64 * 1024 * 1024


class BillFormatError(ValueError):
    """A settlement file that cannot be read."""


def decode_file_content(file_content: str) -> bytes:
    """fileContent → the zip's bytes."""
    try:
        compressed = base64.b64decode(file_content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BillFormatError("fileContent is not Base64") from exc
    if len(compressed) > FILE_COMPRESSED_MAX_BYTES:
        raise BillFormatError("fileContent too large")
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(compressed, FILE_UNZIPPED_MAX_BYTES)
    except zlib.error as exc:
        raise BillFormatError("fileContent is not deflated") from exc
    if inflater.unconsumed_tail:
        raise BillFormatError("settlement file larger than the limit")
    return data


def split_line(line: str) -> dict[str, str]:
    """One ZM line → {field: trimmed value}; a line shorter than the known columns is an error."""
    fields: dict[str, str] = {}
    position = 0
    for name, width in ZM_FIELDS:
        if position + width > len(line):
            raise BillFormatError(f"ZM line too short at {name}: {line[:40]!r}")
        fields[name] = line[position : position + width].strip()
        position += width + 1
    return fields


def _signed_fen(value: str) -> int:
    """`D000000000040` → 40 (the merchant pays), `C…` → -40 (returned to the merchant)."""
    if len(value) < 2 or value[0] not in "CD" or not value[1:].isdigit():
        raise BillFormatError(f"not a direction amount: {value!r}")
    return int(value[1:]) if value[0] == "D" else -int(value[1:])


def _occurred_at(trace_time: str, bill_date: date) -> datetime:
    year = bill_date.year - (1 if trace_time[:2] == "12" and bill_date.month == 1 else 0)
    try:
        return datetime.strptime(f"{year}{trace_time}", TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError as exc:
        raise BillFormatError(f"bad traceTime {trace_time!r}") from exc


def parse_zm(text: str, bill_date: date, refund_prefix: str = "") -> list[BillLine]:
    lines: list[BillLine] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        f = split_line(raw)
        if f["txnCode"] not in (CODE_CONSUME, CODE_REVOKE, CODE_REFUND):
            continue
        if not f["txnAmt"].isdigit():
            raise BillFormatError(f"bad txnAmt {f['txnAmt']!r}")
        extra = {k: f[k] for k in ("txnCode", "traceNo", "accNo", "payCardType", "merId", "origQueryId") if f[k]}
        line = functools.partial(
            BillLine,
            amount_minor=int(f["txnAmt"]),
            fee_minor=_signed_fen(f["merFee"]),
            status=f["txnCode"],
            occurred_at=_occurred_at(f["traceTime"], bill_date),
            extra=extra,
        )
        if f["txnCode"] == CODE_CONSUME:
            lines.append(line(kind=BillLineKind.PAYMENT, out_trade_no=f["orderId"], channel_trade_no=f["queryId"]))
        else:
            lines.append(
                line(
                    kind=BillLineKind.REFUND,
                    out_trade_no="",
                    channel_trade_no=f["origQueryId"],
                    out_refund_no=refund_prefix + f["orderId"],
                    channel_refund_no=f["queryId"],
                )
            )
    # A refund's original order number is the consume line with its origQueryId, when in this file.
    by_query = {line.channel_trade_no: line.out_trade_no for line in lines if line.kind is BillLineKind.PAYMENT}
    return [
        dataclasses.replace(line, out_trade_no=by_query[line.channel_trade_no])
        if line.kind is BillLineKind.REFUND and line.channel_trade_no in by_query
        else line
        for line in lines
    ]


def parse_file_zip(data: bytes, bill_date: date, mer_id: str, refund_prefix: str = "") -> Bill:
    """The zip from the file transfer → the day's Bill (the ZM file of this merchant)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BillFormatError("settlement file is not a zip") from exc
    wanted = f"INN{bill_date:%y%m%d}01ZM_{mer_id}"
    names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == wanted]
    if not names:
        raise BillFormatError(f"no {wanted} in the settlement zip")
    info = archive.getinfo(names[0])
    if info.file_size > FILE_UNZIPPED_MAX_BYTES:
        raise BillFormatError("ZM file larger than the limit")
    raw = archive.read(info)
    return Bill(
        bill_date=bill_date,
        lines=parse_zm(raw.decode("gb18030"), bill_date, refund_prefix),
        raw_sha1=hashlib.sha1(raw).hexdigest(),
    )
