"""Alipay bill zip parsing on a literal bill built here: GBK bytes, GBK member names, `#` lines, TABs."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, date, datetime

import pytest

from services.cashier.connectors.alipay.bills import (
    BillFormatError,
    extract_detail_csv,
    parse_bill_zip,
    parse_detail_csv,
)
from services.cashier.connectors.base import BillLineKind

HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)
DETAIL = "\r\n".join(
    [
        "#支付宝业务明细查询",
        "#账号：[20880211096256330156]",
        "#起始日期：[2019年09月16日 00:00:00]   终止日期：[2019年09月17日 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        HEADER,
        "2019091622001458860515315453\t,service_1568601259302\t,交易\t,下单测试,2019-09-16 10:55:16,"
        "2019-09-16 10:55:23,\t,\t,\t,\t,*杨(137****2600)\t,100.00,100.00,"
        "0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"
        "\t,-0.60,0.00,下单测试",
        "2019091622001458860515315453\t,service_1568601259302\t,退款\t,下单测试,2019-09-16 11:00:00,"
        "2019-09-16 11:00:01,\t,\t,\t,\t,*杨(137****2600)\t,-30.00,-30.00,"
        "0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"
        "re_test_1568602607356\t,0.18,0.00,下单测试",
        "2019091622001458860515315999\t,service_1568601259999\t,交易\t,一分钱,2019-09-16 12:00:00,"
        "2019-09-16 12:00:05,\t,\t,\t,\t,*王(138****0000)\t,0.01,0.01,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"
        "\t,0.00,0.00,",
        "2019091622001458860515315888\t,service_x\t,冻结\t,unknown kind,2019-09-16 12:00:00,"
        "2019-09-16 12:00:05,\t,\t,\t,\t,\t,1.00,1.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,0.00,0.00,",
        "#-----------------------------------------业务明细列表结束------------------------------------",
        "#交易合计：2笔，商家实收共100.01元，商家优惠共0.00元",
        "#退款合计：1笔，商家实收退款共-30.00元，商家优惠退款共0.00元",
        "#导出时间：[2019年09月17日 05:46:49]",
        "",
    ]
)
SUMMARY = "\r\n".join(
    [
        "#支付宝业务汇总查询",
        "#账号：[20880211096256330156]",
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）",
        "合计,,2,1,70.01,70.01",
        "",
    ]
)


class _GbkNameZipInfo(zipfile.ZipInfo):
    """Write the member name as raw GBK bytes without the UTF-8 flag, as Alipay's zips do."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits


def _bill_zip(*, gbk_names: bool = True, detail_name: str = "20880211096256330156_20190916_业务明细.csv") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            ("20880211096256330156_20190916_业务明细(汇总).csv", SUMMARY),
            (detail_name, DETAIL),
        ):
            info = _GbkNameZipInfo(name) if gbk_names else zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk"))
    return buffer.getvalue()


def test_literal_gbk_bill_zip_is_parsed() -> None:
    data = _bill_zip()
    assert "业务明细".encode("gbk") in data  # the member names really are raw GBK bytes
    assert "商家实收".encode("gbk") not in data  # and the CSV is compressed, not stored
    bill = parse_bill_zip(data, date(2019, 9, 16))
    assert bill.bill_date == date(2019, 9, 16)
    assert bill.raw_sha1 == hashlib.sha1(data).hexdigest()
    assert [(line.kind, line.out_trade_no, line.amount_minor, line.fee_minor) for line in bill.lines] == [
        (BillLineKind.PAYMENT, "service_1568601259302", 10000, 60),
        (BillLineKind.REFUND, "service_1568601259302", 3000, -18),
        (BillLineKind.PAYMENT, "service_1568601259999", 1, 0),
    ]
    payment, refund, _ = bill.lines
    assert payment.channel_trade_no == "2019091622001458860515315453"  # trailing TAB stripped
    assert payment.out_refund_no is None
    assert payment.status == "交易"
    assert payment.occurred_at == datetime(2019, 9, 16, 2, 55, 23, tzinfo=UTC)
    assert payment.extra["subject"] == "下单测试"
    assert payment.extra["buyer"] == "*杨(137****2600)"
    assert payment.extra["order_amount_minor"] == "10000"
    assert refund.out_refund_no == "re_test_1568602607356"
    assert refund.status == "退款"


def test_detail_file_is_found_by_content_even_with_utf8_flagged_or_odd_names() -> None:
    name, text = extract_detail_csv(_bill_zip(gbk_names=False))
    assert name.endswith("_业务明细.csv")
    assert text.startswith("#支付宝业务明细查询")
    name, _ = extract_detail_csv(_bill_zip(detail_name="renamed.csv"))
    assert name == "renamed.csv"


def test_half_width_headers_and_lf_line_endings_are_accepted() -> None:
    text = DETAIL.replace("（", "(").replace("）", ")").replace("\r\n", "\n")
    assert [line.amount_minor for line in parse_detail_csv(text)] == [10000, 3000, 1]


def test_unreadable_bills_are_refused() -> None:
    with pytest.raises(BillFormatError):
        parse_bill_zip(b"not a zip", date(2019, 9, 16))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.csv", SUMMARY.encode("gbk"))
    with pytest.raises(BillFormatError):
        parse_bill_zip(buffer.getvalue(), date(2019, 9, 16))
    with pytest.raises(BillFormatError):
        parse_detail_csv("#支付宝业务明细查询\n#nothing else\n")
    with pytest.raises(BillFormatError):
        parse_detail_csv("a,b,c\n1,2,3\n")
