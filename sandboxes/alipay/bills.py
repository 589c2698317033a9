"""Alipay trade bills in the real layout: a zip of two GBK CSVs (docs/protocols/alipay.md §8).

`<pid>_<yyyyMMdd>_业务明细.csv` lists every payment (交易) and refund (退款) of the period with `#`
comment lines around it, TAB-suffixed ID/text cells, full-width `（元）` headers and negative refund
amounts; `<pid>_<yyyyMMdd>_业务明细(汇总).csv` holds the totals. Member names are written as raw
GBK bytes without the zip UTF-8 flag, as Alipay's files are. Discrepancies injected through the
control API are applied here, so reconciliation tests can see a dropped line, a changed amount or a
success the sandbox never had.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sandboxes.alipay.trades import BEIJING, beijing, from_iso, new_trade_no, yuan

DETAIL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)
SUMMARY_HEADER = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,"
    "卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
)
RULE = "-" * 41
DISCREPANCY_KINDS = ("drop_line", "change_amount", "report_success")
DEFAULT_BUYER_FOR_INJECTED = "inj***@sandbox.com"


@dataclass(slots=True)
class _Row:
    kind: str  # 交易 | 退款
    trade_no: str
    out_trade_no: str
    subject: str
    created: datetime
    finished: datetime
    amount_fen: int  # 订单金额, signed as shown: refunds negative
    fee_fen: int  # signed as shown: a charge on payments (negative), given back on refunds
    request_no: str
    buyer: str
    remark: str
    merchant_off_fen: int = 0  # 商家优惠: the vouchers' merchant-funded part (商家券), signed like the amount
    alipay_off_fen: int = 0  # 支付宝优惠: the vouchers' part Alipay (or another) funded, signed like the amount
    voucher_names: str = ""  # 券名称 of the vouchers used

    @property
    def received_fen(self) -> int:
        """商家实收: what Alipay settles to the merchant, the order amount less the merchant-funded discount
        (the trade's `receipt_amount`); a refund's, less the merchant-funded share it gives back as the voucher."""
        return self.amount_fen - self.merchant_off_fen

    @property
    def voucher_fen(self) -> int:
        """券核销金额: the vouchers' whole face value (or, on a refund, the share of it given back)."""
        return self.merchant_off_fen + self.alipay_off_fen


def fee_fen(amount_fen: int, fee_rate_bps: int) -> int:
    """Channel fee rounded half-up to the fen."""
    return (abs(amount_fen) * fee_rate_bps + 5000) // 10000


def _shares(trade: dict[str, Any], part_fen: int) -> list[int]:
    """Each refund's share of a discount `part_fen`, in refund order, by cumulative floors
    (⌊refunded so far × part / total⌋ less the shares before): a full refund gives back exactly the part, and
    Juhe's ledger and settlement compute the same shares (docs/ledger.md §3.15) [L: Alipay's own rounding]."""
    shares, refunded, given = [], 0, 0
    for refund in trade.get("refunds", []):
        refunded += refund["amount_fen"]
        cumulative = refunded * part_fen // trade["total_fen"]
        shares.append(cumulative - given)
        given = cumulative
    return shares


def _rows(trades: list[dict[str, Any]], start: datetime, end: datetime, fee_rate_bps: int) -> list[_Row]:
    rows: list[_Row] = []
    for trade in trades:
        vouchers = trade.get("vouchers") or []
        merchant_off = sum(d["merchant_fen"] for d in vouchers)
        alipay_off = sum(d["amount_fen"] - d["merchant_fen"] for d in vouchers)
        names = "|".join(d["name"].replace(",", "，") for d in vouchers)
        created = from_iso(trade.get("opened_at")) or from_iso(trade["created_at"])
        assert created is not None
        paid_at = from_iso(trade.get("paid_at"))
        buyer = trade.get("buyer_logon_id") or ""
        remark = trade.get("body") or trade["subject"]
        if paid_at is not None and start <= paid_at < end:
            rows.append(
                _Row(
                    "交易",
                    trade["trade_no"],
                    trade["out_trade_no"],
                    trade["subject"],
                    created,
                    paid_at,
                    trade["total_fen"],
                    -fee_fen(trade["total_fen"], fee_rate_bps),
                    "",
                    buyer,
                    remark,
                    merchant_off,
                    alipay_off,
                    names,
                )
            )
        merchant_shares, alipay_shares = _shares(trade, merchant_off), _shares(trade, alipay_off)
        for index, refund in enumerate(trade.get("refunds", [])):
            refunded_at = from_iso(refund["refunded_at"])
            assert refunded_at is not None
            if start <= refunded_at < end:
                rows.append(
                    _Row(
                        "退款",
                        trade["trade_no"],
                        trade["out_trade_no"],
                        trade["subject"],
                        refunded_at,
                        refunded_at,
                        -refund["amount_fen"],
                        fee_fen(refund["amount_fen"], fee_rate_bps),
                        refund["out_request_no"],
                        buyer,
                        remark,
                        -merchant_shares[index],
                        -alipay_shares[index],
                        names,
                    )
                )
    rows.sort(key=lambda row: (row.finished, row.trade_no, row.kind))
    return rows


def _matches(row: _Row, item: dict[str, Any]) -> bool:
    if row.out_trade_no != item["out_trade_no"]:
        return False
    request_no = item.get("out_request_no")
    return row.kind == "退款" and row.request_no == request_no if request_no else row.kind == "交易"


def apply_discrepancies(
    rows: list[_Row], items: list[dict[str, Any]], start: datetime, fee_rate_bps: int
) -> list[_Row]:
    for item in items:
        if item["kind"] == "drop_line":
            rows = [row for row in rows if not _matches(row, item)]
        elif item["kind"] == "change_amount":
            for row in rows:
                if _matches(row, item):
                    sign = -1 if row.kind == "退款" else 1
                    row.amount_fen = sign * abs(int(item["amount_minor"])) + row.merchant_off_fen  # 商家实收 = it
        elif item["kind"] == "report_success":
            moment = start + timedelta(hours=12)
            amount = abs(int(item["amount_minor"]))
            rows.append(
                _Row(
                    "交易",
                    item.get("trade_no") or new_trade_no(moment),
                    item["out_trade_no"],
                    item.get("subject") or "sandbox discrepancy",
                    moment,
                    moment,
                    amount,
                    -fee_fen(amount, fee_rate_bps),
                    "",
                    DEFAULT_BUYER_FOR_INJECTED,
                    "injected",
                )
            )
    return rows


def _detail_line(row: _Row) -> str:
    cells = [
        row.trade_no + "\t",
        row.out_trade_no + "\t",
        row.kind + "\t",
        row.subject.replace(",", "，"),
        beijing(row.created),
        beijing(row.finished),
        "\t",  # 门店编号
        "\t",  # 门店名称
        "\t",  # 操作员
        "\t",  # 终端号
        row.buyer + "\t",
        yuan(row.amount_fen),
        yuan(row.received_fen),
        "0.00",  # 支付宝红包: a payer's red packet, a way of paying the sandbox has not
        "0.00",  # 集分宝: points, likewise
        yuan(row.alipay_off_fen),
        yuan(row.merchant_off_fen),
        yuan(row.voucher_fen),
        row.voucher_names,
        "0.00\t",  # 商家红包消费金额
        "0.00",  # 卡消费金额
        row.request_no + "\t",
        yuan(row.fee_fen),
        "0.00",
        row.remark.replace(",", "，"),
    ]
    return ",".join(cells)


def render_detail(pid: str, rows: list[_Row], start: datetime, end: datetime, exported_at: datetime) -> str:
    payments = [row for row in rows if row.kind == "交易"]
    refunds = [row for row in rows if row.kind == "退款"]
    lines = [
        "#支付宝业务明细查询",
        f"#账号：[{pid}0156]",
        f"#起始日期：[{start.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]   "
        f"终止日期：[{end.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
        f"#{RULE}业务明细列表{RULE}",
        DETAIL_HEADER,
        *(_detail_line(row) for row in rows),
        f"#{RULE}业务明细列表结束{RULE[:-4]}",
        f"#交易合计：{len(payments)}笔，商家实收共{yuan(sum(r.received_fen for r in payments))}元，"
        f"商家优惠共{yuan(sum(r.merchant_off_fen for r in payments))}元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{yuan(sum(r.received_fen for r in refunds))}元，"
        f"商家优惠退款共{yuan(sum(r.merchant_off_fen for r in refunds))}元",
        f"#导出时间：[{exported_at.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
    ]
    return "\r\n".join(lines) + "\r\n"


def render_summary(pid: str, rows: list[_Row], start: datetime, end: datetime, exported_at: datetime) -> str:
    payments = sum(1 for row in rows if row.kind == "交易")
    refunds = sum(1 for row in rows if row.kind == "退款")
    amount = sum(row.amount_fen for row in rows)
    received = sum(row.received_fen for row in rows)
    alipay_off = sum(row.alipay_off_fen for row in rows)
    merchant_off = sum(row.merchant_off_fen for row in rows)
    fees = sum(row.fee_fen for row in rows)
    total = (
        f"合计,,{payments},{refunds},{yuan(amount)},{yuan(received)},{yuan(alipay_off)},{yuan(merchant_off)},0.00,"
        f"{yuan(fees)},0.00,{yuan(received + fees)}"
    )
    lines = [
        "#支付宝业务汇总查询",
        f"#账号：[{pid}0156]",
        f"#起始日期：[{start.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]   "
        f"终止日期：[{end.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
        f"#{RULE}业务汇总列表{RULE}",
        SUMMARY_HEADER,
        total,
        f"#{RULE}业务汇总列表结束{RULE[:-4]}",
        f"#导出时间：[{exported_at.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
    ]
    return "\r\n".join(lines) + "\r\n"


ACCOUNT_HEADER = (
    "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,账户余额（元）,"
    "交易渠道,业务类型,备注"
)


def render_account(pid: str, rows: list[_Row], start: datetime, end: datetime, exported_at: datetime) -> str:
    """账务明细 (`bill_type=signcustomer`): the merchant account's movements, one per money move: a
    payment in (在线支付) and its fee out (交易服务费), a refund out (交易退款) and the fee given back
    (收费退款) [M on the columns; the running balance starts at zero for the period, a sandbox has no
    history]."""
    movements: list[tuple[_Row, str, int]] = []
    for row in rows:
        movements.append((row, "在线支付" if row.kind == "交易" else "交易退款", row.received_fen))
        if row.fee_fen:
            movements.append((row, "交易服务费" if row.kind == "交易" else "收费退款", row.fee_fen))
    balance = 0
    lines = [
        "#支付宝账务明细查询",
        f"#账号：[{pid}0156]",
        f"#起始日期：[{start.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]   "
        f"终止日期：[{end.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
        f"#{RULE}账务明细列表{RULE}",
        ACCOUNT_HEADER,
    ]
    for index, (row, kind, fen) in enumerate(movements, start=1):
        balance += fen
        flow_no = f"{row.finished.astimezone(BEIJING):%Y%m%d}{index:08d}"
        cells = [
            flow_no + "	",
            row.trade_no + "	",
            row.out_trade_no + "	",
            row.subject.replace(",", "，"),
            beijing(row.finished),
            row.buyer + "	",
            f"+{yuan(fen)}" if fen >= 0 else "",
            yuan(fen) if fen < 0 else "",
            yuan(balance),
            "支付宝	",
            kind,
            row.request_no + "	",
        ]
        lines.append(",".join(cells))
    income = [fen for _, _, fen in movements if fen >= 0]
    expense = [fen for _, _, fen in movements if fen < 0]
    lines += [
        f"#{RULE}账务明细列表结束{RULE[:-4]}",
        f"#支出合计：{len(expense)}笔，共{yuan(sum(expense))}元",
        f"#收入合计：{len(income)}笔，共{yuan(sum(income))}元",
        f"#导出时间：[{exported_at.astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]",
    ]
    return "\r\n".join(lines) + "\r\n"


class _GbkNameZipInfo(zipfile.ZipInfo):
    """Store the member name as raw GBK bytes with no UTF-8 flag, like Alipay's own zips.

    zipfile has no public switch for legacy-encoded names; this overrides its private encoder hook
    (stable since Python 3.0) because writing the real byte layout is the point of the sandbox.
    """

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def build_bill_zip(
    *,
    pid: str,
    compact_date: str,
    trades: list[dict[str, Any]],
    discrepancies: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    fee_rate_bps: int,
    exported_at: datetime,
    bill_type: str = "trade",
) -> tuple[str, bytes]:
    """Return (download file name, zip bytes) for one merchant and period; `signcustomer`: 账务明细."""
    rows = apply_discrepancies(_rows(trades, start, end, fee_rate_bps), discrepancies, start, fee_rate_bps)
    members: list[tuple[str, str]] = [
        (f"{pid}_{compact_date}_业务明细.csv", render_detail(pid, rows, start, end, exported_at)),
        (f"{pid}_{compact_date}_业务明细(汇总).csv", render_summary(pid, rows, start, end, exported_at)),
    ]
    if bill_type == "signcustomer":
        members = [(f"{pid}_{compact_date}_账务明细.csv", render_account(pid, rows, start, end, exported_at))]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members:
            info = _GbkNameZipInfo(name, date_time=exported_at.astimezone(BEIJING).timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk"))
    return f"{pid}_{compact_date}.csv.zip", buffer.getvalue()
