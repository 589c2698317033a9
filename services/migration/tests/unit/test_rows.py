"""The source-row rules: check characters, each rejection reason, control totals and reconciliation."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.migration.domain import errors as e
from services.migration.domain import rows as r
from services.migration.domain.control import ControlInvalid, parse_control, reconcile
from services.migration.flows import sources
from services.migration.tests import generate as g


def test_resident_id_check_character_iso7064() -> None:
    # GB 11643-1999's published example.
    assert r.iso7064_mod11_2("11010519491231002") == "X"
    assert r.resident_id_ok("11010519491231002X")
    assert not r.resident_id_ok("110105194912310021")  # wrong check character
    assert not r.resident_id_ok("11010519491331002X")  # month 13
    assert all(r.resident_id_ok(g.resident_id(n)) for n in range(0, 5000, 37))


def test_credit_code_and_card_checks() -> None:
    assert r.credit_code_ok("91350100M000100Y43")  # a published GB 32100 example
    assert r.credit_code_ok(g.credit_code(12))
    assert not r.credit_code_ok(g.credit_code(12)[:17] + "0" if g.credit_code(12)[17] != "0" else "1")
    assert r.luhn_ok(g.bank_card(5)) and not r.luhn_ok(g.bank_card(5)[:-1] + str((int(g.bank_card(5)[-1]) + 1) % 10))


@pytest.mark.parametrize(
    ("kind", "raw", "reason"),
    [
        (r.Kind.PERSONS, g.person(1, resident_id="110105194912310021"), e.BAD_RESIDENT_ID),
        (r.Kind.PERSONS, g.person(1, phone="12345"), e.BAD_PHONE),
        (r.Kind.PERSONS, g.person(2, bank_card="6222020000000000001"), e.BAD_BANK_CARD),
        (r.Kind.PERSONS, g.person(2, bank_card=""), e.BAD_FIELD),  # level 2 without a card
        (r.Kind.PERSONS, g.person(1, name=""), e.MISSING_FIELD),
        (r.Kind.PERSONS, g.person(1, source_id="a b"), e.BAD_FIELD),
        (r.Kind.MERCHANTS, g.merchant(1, credit_code="91350100M000100Y44"), e.BAD_CREDIT_CODE),
        (r.Kind.MERCHANTS, g.merchant(1, settlement_account="12"), e.BAD_FIELD),
        (r.Kind.BALANCES, g.balance("B1", "P1", -1), e.NEGATIVE_BALANCE),
        (r.Kind.BALANCES, {**g.balance("B1", "P1", 1), "amount_minor": "1.50"}, e.BAD_AMOUNT),
        (r.Kind.BALANCES, g.balance("B1", "P1", 1, "points", "CNY"), e.BAD_FIELD),
        (r.Kind.BALANCES, g.balance("B1", "P1", 1, "prepaid"), e.MISSING_FIELD),  # no merchant
    ],
)
def test_each_rejection_reason(kind: r.Kind, raw: dict[str, str], reason: str) -> None:
    with pytest.raises(r.RowRejected) as caught:
        r.parse(kind, raw)
    assert caught.value.reason == reason


def test_good_rows_parse_and_ids_are_deterministic() -> None:
    p = r.parse(r.Kind.PERSONS, g.person(3))
    assert isinstance(p, r.PersonRow) and p.kyc_level == 0
    assert r.juhe_holder_id("pf", r.Kind.PERSONS, "P3") == r.juhe_holder_id("pf", r.Kind.PERSONS, "P3")
    assert r.juhe_holder_id("pf", r.Kind.PERSONS, "P3") != r.juhe_holder_id("other", r.Kind.PERSONS, "P3")
    b = r.parse(r.Kind.BALANCES, g.balance("B1", "P1", 0))
    assert isinstance(b, r.BalanceRow) and b.amount_minor == 0


def test_sources_read_gbk_and_utf8_csv_and_jsonl(tmp_path: Path) -> None:
    gbk = g.write_csv(tmp_path / "m.csv", g.MERCHANT_FIELDS, [g.merchant(1), g.merchant(2)], encoding="gbk")
    utf = g.write_jsonl(tmp_path / "p.jsonl", [g.person(1), g.person(2)])
    (tmp_path / "broken.jsonl").write_text('{"source_id": "P1"}\nnot json\n', encoding="utf-8")
    s = sources.inspect(gbk)
    assert (s.encoding, s.records) == ("gbk", 2)
    assert [raw["name"] for _, raw in sources.records(s) if raw] == ["商户1号便利店", "商户2号便利店"]
    assert [n for n, _ in sources.records(sources.inspect(utf), skip=1)] == [2]
    assert [raw for _, raw in sources.records(sources.inspect(tmp_path / "broken.jsonl"))][1] is None
    with pytest.raises(sources.SourceInvalid):
        sources.inspect(gbk, "utf-8")


def test_control_and_reconciliation() -> None:
    control = parse_control(
        [
            {"record": "persons", "currency": "", "count": "2", "amount_minor": ""},
            {"record": "balances", "currency": "CNY", "count": "2", "amount_minor": "300"},
        ]
    )
    ok = reconcile(
        control,
        file_counts={"persons": 2},
        file_totals={"CNY": (2, 300)},
        written_totals={"CNY": 300},
        suspense_minor={"CNY": 0},
        rejected=0,
    )
    assert ok.ok
    bad = reconcile(
        control,
        file_counts={"persons": 3},
        file_totals={"CNY": (2, 300)},
        written_totals={"CNY": 200},
        suspense_minor={"CNY": 100},
        rejected=1,
    )
    assert len(bad.differences) == 4
    with pytest.raises(ControlInvalid):
        parse_control([{"record": "balances", "currency": "EUR", "count": "1", "amount_minor": "1"}])


def test_the_documented_examples_are_clean() -> None:
    docs = Path(__file__).resolve().parents[4] / "docs" / "migration"
    for kind, name in (
        (r.Kind.MERCHANTS, "merchants.csv"),
        (r.Kind.PERSONS, "persons.jsonl"),
        (r.Kind.BALANCES, "balances.csv"),
    ):
        for _, raw in sources.records(sources.inspect(docs / name)):
            assert raw is not None
            r.parse(kind, raw)
    control = parse_control(sources.control_records(docs / "control.csv"))
    assert control.balances == {"CNY": (3, 17345), "XXX": (1, 800)}


def test_credit_rows_and_their_control() -> None:
    row = r.parse_balance({**g.balance("L1", "P1", 3000, "credit"), "credit_limit_minor": "10000"})
    assert (row.subaccount, row.amount_minor, row.credit_limit_minor) == (r.Subaccount.CREDIT, 3000, 10000)
    for limit in ("", "2999", "-1"):  # a line below what is owed, or none
        with pytest.raises(r.RowRejected) as refused:
            r.parse_balance({**g.balance("L1", "P1", 3000, "credit"), "credit_limit_minor": limit})
        assert refused.value.reason == "bad_amount"
    with pytest.raises(r.RowRejected):  # owed money is money, never points
        r.parse_balance({**g.balance("L1", "P1", 3000, "credit", "XXX"), "credit_limit_minor": "9000"})
    control = parse_control(
        [
            {"record": "balances", "currency": "CNY", "count": "2", "amount_minor": "300"},
            {"record": "credit", "currency": "CNY", "count": "1", "amount_minor": "3000"},
        ]
    )
    assert control.balances == {"CNY": (2, 300), "CNY:credit": (1, 3000)}
    ok = reconcile(
        control,
        file_counts={},
        file_totals={"CNY": (2, 300), "CNY:credit": (1, 3000)},
        written_totals={"CNY": 300, "CNY:credit": 3000},
        suspense_minor={"CNY": 0},
        rejected=0,
    )
    assert ok.ok
    mixed = reconcile(
        control,
        file_counts={},
        file_totals={"CNY": (3, 3300)},
        written_totals={"CNY": 3300},
        suspense_minor={"CNY": 0},
        rejected=0,
    )
    assert not mixed.ok  # credit counted as money would not reconcile
    with pytest.raises(ControlInvalid):
        parse_control([{"record": "credit", "currency": "XXX", "count": "1", "amount_minor": "1"}])
