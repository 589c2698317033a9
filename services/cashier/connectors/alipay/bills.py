"""Alipay daily trade bill: zip of GBK CSVs → base.BillLine (docs/protocols/alipay.md §8).

The detail file (`<pid>_<yyyyMMdd>_业务明细.csv`) has `#` comment lines around a header row and the
data rows; ID and text cells end with a TAB so Excel keeps them as text; headers use full-width
`（元）`; `业务类型` is 交易 (payment) or 退款 (refund, with negative amounts and the out_request_no in
`退款批次号/请求号`). The parser is tolerant: it finds columns by header name (full- or half-width
parentheses), strips TABs and spaces from every cell, and ignores row types it does not know
(those are recorded in no BillLine, since BillLineKind has only payment and refund).
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import date

from services.cashier.connectors.alipay.models import parse_beijing, signed_decimal_to_fen
from services.cashier.connectors.base import Bill, BillLine, BillLineKind

DETAIL_MARKER = "#支付宝业务明细查询"
SUMMARY_MARKER = "#支付宝业务汇总查询"
BILL_UNZIPPED_MAX_BYTES = 256 * 1024 * 1024
BILL_ROWS_MAX = 2_000_000

PAYMENT_WORD = "交易"
REFUND_WORD = "退款"

COL_TRADE_NO = "支付宝交易号"
COL_OUT_TRADE_NO = "商户订单号"
COL_KIND = "业务类型"
COL_SUBJECT = "商品名称"
COL_CREATED = "创建时间"
COL_FINISHED = "完成时间"
COL_STORE_ID = "门店编号"
COL_BUYER = "对方账户"
COL_ORDER_AMOUNT = "订单金额(元)"
COL_RECEIVED = "商家实收(元)"
COL_MERCHANT_DISCOUNT = "商家优惠(元)"
COL_REQUEST_NO = "退款批次号/请求号"
COL_FEE = "服务费(元)"
COL_ROYALTY = "分润(元)"
COL_REMARK = "备注"


class BillFormatError(ValueError):
    """The file is not an Alipay bill zip/CSV we can read."""


def _normalise_header(cell: str) -> str:
    return cell.strip().replace("（", "(").replace("）", ")").replace(" ", "")


def _decode_gbk(data: bytes) -> str:
    """Bills are GBK; GB18030 is a strict superset, so it also reads any character GBK lacks."""
    text = data.decode("gb18030")
    return text.removeprefix("\ufeff")


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """Alipay's zips store GBK file names without the UTF-8 flag; zipfile then decodes them as cp437."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gb18030")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def extract_detail_csv(zip_bytes: bytes) -> tuple[str, str]:
    """Return (member name, decoded text) of the detail CSV inside an Alipay bill zip.

    The detail file is recognised by its first line (`#支付宝业务明细查询`), falling back to the
    file name (ends with 业务明细.csv, not the 汇总 one), so renamed members still work.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile as exc:
        raise BillFormatError("bill download is not a zip file") from exc
    with archive:
        candidates: list[tuple[int, str, str]] = []
        total = 0
        for info in archive.infolist():
            if info.is_dir():
                continue
            total += info.file_size
            if total > BILL_UNZIPPED_MAX_BYTES:
                raise BillFormatError("bill zip expands beyond the size limit")
            name = _zip_member_name(info)
            text = _decode_gbk(archive.read(info))
            first_line = text.lstrip().split("\n", 1)[0].strip()
            if first_line.startswith(DETAIL_MARKER):
                candidates.append((0, name, text))
            elif name.endswith("业务明细.csv") and "汇总" not in name:
                candidates.append((1, name, text))
    if not candidates:
        raise BillFormatError("no 业务明细 detail CSV in the bill zip")
    candidates.sort(key=lambda item: item[0])
    return candidates[0][1], candidates[0][2]


def parse_detail_csv(text: str) -> list[BillLine]:
    """Parse the detail CSV text (already decoded) into bill lines, in file order."""
    header: dict[str, int] | None = None
    lines: list[BillLine] = []
    data_rows = (line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    for row_number, row in enumerate(csv.reader(data_rows)):
        if row_number > BILL_ROWS_MAX:
            raise BillFormatError("bill has more rows than the limit")
        cells = [cell.strip() for cell in row]
        if header is None:
            header = {_normalise_header(name): index for index, name in enumerate(cells)}
            for required in (COL_TRADE_NO, COL_OUT_TRADE_NO, COL_KIND):
                if required not in header:
                    raise BillFormatError(f"bill header lacks {required}")
            if COL_RECEIVED not in header and COL_ORDER_AMOUNT not in header:
                raise BillFormatError("bill header lacks an amount column")
            continue
        line = _line_from_cells(cells, header)
        if line is not None:
            lines.append(line)
    if header is None:
        raise BillFormatError("bill has no header row")
    return lines


def _line_from_cells(cells: list[str], header: dict[str, int]) -> BillLine | None:
    def cell(name: str) -> str:
        index = header.get(name)
        return cells[index] if index is not None and index < len(cells) else ""

    word = cell(COL_KIND)
    if word == PAYMENT_WORD:
        kind = BillLineKind.PAYMENT
    elif word == REFUND_WORD:
        kind = BillLineKind.REFUND
    else:
        return None
    amount_text = cell(COL_RECEIVED) or cell(COL_ORDER_AMOUNT)
    fee = abs(signed_decimal_to_fen(cell(COL_FEE)))
    # The bill shows the fee as a charge on payments and as money given back on refunds; the sign
    # convention has varied between captured files [L], so use magnitudes and apply ours:
    # payment fee >= 0, refund fee <= 0 (returned).
    occurred_at = parse_beijing(cell(COL_FINISHED)) or parse_beijing(cell(COL_CREATED))
    if occurred_at is None:
        raise BillFormatError(f"bill row for {cell(COL_OUT_TRADE_NO)!r} has no readable time")
    extra = {
        key: value
        for key, value in (
            ("subject", cell(COL_SUBJECT)),
            ("order_amount_minor", str(abs(signed_decimal_to_fen(cell(COL_ORDER_AMOUNT))))),
            ("merchant_discount_minor", str(abs(signed_decimal_to_fen(cell(COL_MERCHANT_DISCOUNT))))),
            ("royalty_minor", str(signed_decimal_to_fen(cell(COL_ROYALTY)))),
            ("store_id", cell(COL_STORE_ID)),
            ("buyer", cell(COL_BUYER)),
            ("remark", cell(COL_REMARK)),
            ("created_at", cell(COL_CREATED)),
        )
        if value
    }
    request_no = cell(COL_REQUEST_NO) or None
    return BillLine(
        kind=kind,
        out_trade_no=cell(COL_OUT_TRADE_NO),
        channel_trade_no=cell(COL_TRADE_NO),
        amount_minor=abs(signed_decimal_to_fen(amount_text)),
        fee_minor=fee if kind is BillLineKind.PAYMENT else -fee,
        status=word,
        occurred_at=occurred_at,
        out_refund_no=request_no if kind is BillLineKind.REFUND else None,
        channel_refund_no=None,
        extra=extra,
    )


def parse_bill_zip(zip_bytes: bytes, bill_date: date) -> Bill:
    """The whole download → Bill; `raw_sha1` is the SHA-1 of the zip exactly as downloaded."""
    _name, text = extract_detail_csv(zip_bytes)
    return Bill(
        bill_date=bill_date,
        lines=parse_detail_csv(text),
        raw_sha1=hashlib.sha1(zip_bytes).hexdigest(),
    )
