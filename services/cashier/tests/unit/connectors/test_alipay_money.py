"""Yuan strings ↔ fen at the Alipay edge: integer arithmetic, strict for requests, tolerant for bills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.cashier.connectors.alipay.models import (
    AmountError,
    fen_to_yuan,
    format_beijing,
    map_trade_status,
    parse_beijing,
    response_yuan_to_fen,
    signed_decimal_to_fen,
    yuan_to_fen,
)
from services.cashier.connectors.base import TradeStatus


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.01", 1),
        ("0.1", 10),
        ("1", 100),
        ("88.88", 8888),
        ("88.8", 8880),
        ("100000000", 10_000_000_000),
        ("100000000.00", 10_000_000_000),
        ("0.29", 29),  # float("0.29") * 100 == 28.999999999999996
        ("19.99", 1999),
    ],
)
def test_yuan_to_fen_valid(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0.00",
        "0.001",
        "1.234",
        "-1.00",
        "+1.00",
        "100000000.01",
        "1000000000",
        "1e2",
        " 1.00",
        "1.00 ",
        "1,000.00",
        "01.00",
        ".5",
        "5.",
        "",
        "NaN",
        "１.00",  # full-width digit
    ],
)
def test_yuan_to_fen_rejects(text: str) -> None:
    with pytest.raises(AmountError):
        yuan_to_fen(text)


@pytest.mark.parametrize(
    ("fen", "text"), [(1, "0.01"), (10, "0.10"), (8888, "88.88"), (10_000_000_000, "100000000.00")]
)
def test_fen_to_yuan(fen: int, text: str) -> None:
    assert fen_to_yuan(fen) == text
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("fen", [0, -1, 10_000_000_001])
def test_fen_to_yuan_rejects_out_of_range(fen: int) -> None:
    with pytest.raises(AmountError):
        fen_to_yuan(fen)


def test_fen_to_yuan_rejects_non_int() -> None:
    with pytest.raises(AmountError):
        fen_to_yuan(1.5)  # type: ignore[arg-type]
    with pytest.raises(AmountError):
        fen_to_yuan(True)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("-0.01", -1),
        ("0.00", 0),
        ("", 0),
        ("0.04000", 4),
        ("0.00500", 1),  # half-up
        ("-0.00500", -1),  # half away from zero
        ("0.00499", 0),
        ("12", 1200),
        ("1,234.50", 123450),
        (" 3.5\t", 350),
    ],
)
def test_signed_decimal_to_fen_for_bill_cells(text: str, fen: int) -> None:
    assert signed_decimal_to_fen(text) == fen


def test_signed_decimal_to_fen_rejects_garbage() -> None:
    with pytest.raises(AmountError):
        signed_decimal_to_fen("abc")
    with pytest.raises(AmountError):
        signed_decimal_to_fen(".")


def test_response_amounts_are_tolerant() -> None:
    assert response_yuan_to_fen("0.00") == 0
    assert response_yuan_to_fen("88.88") == 8888
    assert response_yuan_to_fen(5) == 500
    assert response_yuan_to_fen(None) is None
    assert response_yuan_to_fen("n/a") is None


def test_beijing_time_round_trip() -> None:
    moment = datetime(2024, 1, 1, 16, 30, 0, tzinfo=UTC)
    assert format_beijing(moment) == "2024-01-02 00:30:00"
    assert parse_beijing("2024-01-02 00:30:00") == moment
    assert parse_beijing("") is None
    assert parse_beijing("garbage") is None
    with pytest.raises(ValueError):
        format_beijing(datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("word", "paid", "status"),
    [
        ("WAIT_BUYER_PAY", False, TradeStatus.PENDING),
        ("TRADE_SUCCESS", True, TradeStatus.SUCCEEDED),
        ("TRADE_FINISHED", True, TradeStatus.SUCCEEDED),
        ("TRADE_CLOSED", False, TradeStatus.CLOSED),
        ("TRADE_CLOSED", True, TradeStatus.SUCCEEDED),
        ("SOMETHING_NEW", False, TradeStatus.PENDING),
    ],
)
def test_map_trade_status(word: str, paid: bool, status: TradeStatus) -> None:
    assert map_trade_status(word, paid=paid) is status
