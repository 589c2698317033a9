"""WeChat Pay trade bill parsing from literal bill texts, and yuan → fen conversion edge cases."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.cashier.connectors.base import BillLineKind
from services.cashier.connectors.wechatpay.bills import BillFormatError, fee_to_fen, parse_trade_bill, yuan_to_fen

CST = timezone(timedelta(hours=8))

ALL_BILL = (
    "\ufeff交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
    "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "`2019-07-25 08:35:41,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000356201907256421370001,`ORDER1,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`CMC,`CNY,`6.00,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`商品, 大号,`attach,`0.04000,`0.60%,`6.00,`0.00,`\r\n"
    "`2019-07-25 09:00:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000356201907256421370001,`ORDER1,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`REFUND,`CMC,`CNY,`0.00,`0.00,`50300000362019072510956871234,"
    "`REF1,`1.50,`0.00,`ORIGINAL,`SUCCESS,`商品, 大号,`attach,`-0.00900,`0.60%,`0.00,`1.50,`\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`2,`6.00,`1.50,`0.00,`0.03100,`6.00,`1.50\r\n"
)

SUCCESS_BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注\n"
    "`2019-07-25 23:59:59,`wx2421b1c4370ec43b,`1900000100,`1900000109,`,`4200000001,`ORDER2,`oSub,`NATIVE,"
    "`SUCCESS,`OTHERS,`CNY,`1234567.89,`0.00,`大额,`,`7407.40734,`0.60%,`1234567.89,`\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n"
    "`1,`1234567.89,`0.00,`0.00,`7407.40734,`1234567.89,`0.00\n"
)

REFUND_BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "`2019-07-25 10:00:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000003,`ORDER3,`oX,`APP,`REFUND,`CMC,`CNY,"
    "`0.00,`0.00,`2019-07-25 10:00:00,`2019-07-25 10:00:05,`5030001,`REF3,`0.05,`0.00,`ORIGINAL,`PROCESSING,"
    "`item,`,`0.00000,`0.60%,`0.00,`0.05,`\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`1,`0.00,`0.05,`0.00,`0.00000,`0.00,`0.05\r\n"
)


def test_all_bill_with_bom_crlf_and_commas_in_values() -> None:
    bill = parse_trade_bill(ALL_BILL.encode("utf-8"), date(2019, 7, 25), raw_sha1="abc")
    assert bill.bill_date == date(2019, 7, 25) and bill.raw_sha1 == "abc"
    payment, refund = bill.lines
    assert payment.kind == BillLineKind.PAYMENT
    assert (payment.out_trade_no, payment.channel_trade_no) == ("ORDER1", "4200000356201907256421370001")
    assert (payment.amount_minor, payment.fee_minor, payment.status) == (600, 4, "SUCCESS")
    assert payment.occurred_at == datetime(2019, 7, 25, 8, 35, 41, tzinfo=CST)
    assert payment.out_refund_no is None
    assert payment.extra["商品名称"] == "商品, 大号" and payment.extra["费率"] == "0.60%"
    assert refund.kind == BillLineKind.REFUND
    assert (refund.out_trade_no, refund.out_refund_no, refund.channel_refund_no) == (
        "ORDER1",
        "REF1",
        "50300000362019072510956871234",
    )
    assert (refund.amount_minor, refund.fee_minor, refund.status) == (150, -1, "SUCCESS")


def test_success_bill_with_lf_and_partner_columns() -> None:
    (line,) = parse_trade_bill(SUCCESS_BILL, date(2019, 7, 25)).lines
    assert (line.kind, line.amount_minor, line.fee_minor) == (BillLineKind.PAYMENT, 123456789, 740741)
    assert line.extra["特约商户号"] == "1900000109" and line.extra["商户号"] == "1900000100"


def test_refund_bill_uses_refund_success_time() -> None:
    (line,) = parse_trade_bill(REFUND_BILL, date(2019, 7, 25)).lines
    assert (line.kind, line.amount_minor, line.status, line.out_refund_no) == (
        BillLineKind.REFUND,
        5,
        "PROCESSING",
        "REF3",
    )
    assert line.occurred_at == datetime(2019, 7, 25, 10, 0, 5, tzinfo=CST)


def test_empty_and_malformed_bills() -> None:
    assert parse_trade_bill("", date(2019, 7, 25)).lines == []
    with pytest.raises(BillFormatError):
        parse_trade_bill("hello,world\r\n`1,`2\r\n", date(2019, 7, 25))
    header, first_row = ALL_BILL.split("\r\n")[:2]
    with pytest.raises(BillFormatError):
        parse_trade_bill(header + "\r\n" + first_row.rsplit(",", 2)[0] + "\r\n", date(2019, 7, 25))


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.00", 0),
        ("0.01", 1),
        ("0.1", 10),
        ("0.10", 10),
        ("1", 100),
        ("6.00", 600),
        ("88.88", 8888),
        ("-0.01", -1),
        ("-1.50", -150),
        ("1234567.89", 123456789),
        (" 3.20 ", 320),
        ("99999999999.99", 9999999999999),
    ],
)
def test_yuan_to_fen(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["", "abc", "1.005", "1e3", "1.2.3", ".5", "--1", "0x10", "１.00", "1,000.00"])
def test_yuan_to_fen_rejects_what_is_not_a_2_decimal_amount(text: str) -> None:
    with pytest.raises(BillFormatError):
        yuan_to_fen(text)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.00000", 0),
        ("0.04000", 4),
        ("0.00499", 0),
        ("0.00500", 1),
        ("0.00501", 1),
        ("0.01499", 1),
        ("0.01500", 2),
        ("0.53328", 53),
        ("-0.05328", -5),
        ("-0.00500", -1),
        ("-0.00499", 0),
        ("1", 100),
        ("0.6", 60),
        ("7407.40734", 740741),
    ],
)
def test_fee_to_fen_rounds_half_up(text: str, fen: int) -> None:
    assert fee_to_fen(text) == fen


def test_fee_to_fen_rejects_more_than_5_decimals() -> None:
    with pytest.raises(BillFormatError):
        fee_to_fen("0.000001")
