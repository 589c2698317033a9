"""Render the WeChat Pay trade bill file (docs/protocols/wechatpay.md §10): backticked fields, CRLF lines."""

from __future__ import annotations

from collections.abc import Sequence

HEADER_ALL = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
]
_REFUND_COLUMNS = ("微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态")
HEADER_SUCCESS = [c for c in HEADER_ALL if c not in _REFUND_COLUMNS and c != "申请退款金额"]
_VOUCHER_INDEX = HEADER_ALL.index("代金券金额") + 1
HEADER_REFUND = [*HEADER_ALL[:_VOUCHER_INDEX], "退款申请时间", "退款成功时间", *HEADER_ALL[_VOUCHER_INDEX:]]
SUMMARY_HEADER = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]
HEADERS = {"ALL": HEADER_ALL, "SUCCESS": HEADER_SUCCESS, "REFUND": HEADER_REFUND}
# The SUCCESS bill has no refunds, so its summary has no refund totals [H: the official 交易账单 format page]
_SUCCESS_SUMMARY = ("总交易单数", "应结订单总金额", "手续费总金额", "订单总金额")

assert len(HEADER_ALL) == 27 and len(HEADER_SUCCESS) == 20 and len(HEADER_REFUND) == 29


def yuan(amount_fen: int) -> str:
    """Integer fen → `12.34` (sign kept), no floats."""
    sign = "-" if amount_fen < 0 else ""
    value = abs(amount_fen)
    return f"{sign}{value // 100}.{value % 100:02d}"


def fee_e5(amount_fen: int, fee_rate_bps: int) -> int:
    """Fee in 1e-5 yuan (the bill's 5 decimals), rounded half-up: fen × bps / 10000 × 1000."""
    numerator = abs(amount_fen) * fee_rate_bps * 1000
    value = (numerator + 5000) // 10000
    return value if amount_fen >= 0 else -value


def yuan_e5(value_e5: int) -> str:
    sign = "-" if value_e5 < 0 else ""
    value = abs(value_e5)
    return f"{sign}{value // 100000}.{value % 100000:05d}"


def rate_text(fee_rate_bps: int) -> str:
    return f"{fee_rate_bps // 100}.{fee_rate_bps % 100:02d}%"


def _e5_from_text(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    return sign * (int(whole) * 100000 + int((frac + "00000")[:5]))


def render(bill_type: str, rows: Sequence[dict[str, str]]) -> str:
    """Rows are dicts keyed by the ALL/REFUND column names; missing columns render empty."""
    header = HEADERS[bill_type]
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join("`" + row.get(column, "") for column in header))
    settled = sum(_e5_from_text(r.get("应结订单金额", "0.00")) for r in rows)
    refunded = sum(_e5_from_text(r.get("退款金额", "0.00")) for r in rows)
    coupons_refunded = sum(_e5_from_text(r.get("充值券退款金额", "0.00")) for r in rows)
    fees = sum(_e5_from_text(r.get("手续费", "0.00000")) for r in rows)
    ordered = sum(_e5_from_text(r.get("订单金额", "0.00")) for r in rows)
    requested = sum(_e5_from_text(r.get("申请退款金额", "0.00")) for r in rows)
    totals = {
        "总交易单数": str(len(rows)),
        "应结订单总金额": yuan(settled // 1000),
        "退款总金额": yuan(refunded // 1000),
        "充值券退款总金额": yuan(coupons_refunded // 1000),
        "手续费总金额": yuan_e5(fees),
        "订单总金额": yuan(ordered // 1000),
        "申请退款总金额": yuan(requested // 1000),
    }
    summary_header = _SUCCESS_SUMMARY if bill_type == "SUCCESS" else SUMMARY_HEADER
    lines.append(",".join(summary_header))
    lines.append(",".join("`" + totals[name] for name in summary_header))
    return "\r\n".join(lines) + "\r\n"


# 资金账单 (fund-flow bill, GET /v3/bill/fundflowbill) [M: official file-format page via WxJava's parser]:
# one line per movement of the merchant's account, backticked like the trade bill, then a summary.
FUNDFLOW_HEADER = [
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额（元）",
    "账户结余（元）",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
]
FUNDFLOW_SUMMARY_HEADER = ["资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额"]
ACCOUNT_TYPES = ("BASIC", "OPERATION", "FEES")


def render_fundflow(movements: Sequence[tuple[str, str, str, str, str, int, str]]) -> str:
    """movements: (time, business no, flow no, business name, business type, signed fen, voucher no),
    in booking order; the running balance starts at zero for the day [L: a sandbox has no history]."""
    lines = [",".join(FUNDFLOW_HEADER)]
    balance = income = expense = income_count = 0
    for moment, business_no, flow_no, name, kind, fen, voucher in movements:
        balance += fen
        if fen >= 0:
            income, income_count = income + fen, income_count + 1
        else:
            expense -= fen
        cells = [
            moment,
            business_no,
            flow_no,
            name,
            kind,
            "收入" if fen >= 0 else "支出",
            yuan(abs(fen)),
            yuan(balance),
            "system",
            "",
            voucher,
        ]
        lines.append(",".join("`" + cell for cell in cells))
    lines.append(",".join(FUNDFLOW_SUMMARY_HEADER))
    summary = [str(len(movements)), str(income_count), yuan(income), str(len(movements) - income_count), yuan(expense)]
    lines.append(",".join("`" + value for value in summary))
    return "\r\n".join(lines) + "\r\n"
