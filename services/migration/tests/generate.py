"""Deterministic source files for tests and bench/migration.py: valid documents from a number, so every
test (and every bench round) uses documents no other one uses in the same ledger."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from services.migration.domain.rows import _USCC_CHARS, iso7064_mod11_2, luhn_ok

CONTROL_FIELDS = ["record", "currency", "count", "amount_minor"]
MERCHANT_FIELDS = [
    "source_id",
    "name",
    "credit_code",
    "legal_person",
    "industry",
    "settlement_account",
    "phone",
    "wechatpay_sub_mchid",
    "alipay_smid",
]
PERSON_FIELDS = ["source_id", "name", "resident_id", "phone", "kyc_level", "bank_card"]
BALANCE_FIELDS = ["source_id", "person_source_id", "subaccount", "merchant_source_id", "amount_minor", "currency"]


def resident_id(n: int) -> str:
    born = date(1950, 1, 1) + timedelta(days=n // 997)
    first17 = f"110101{born:%Y%m%d}{n % 997:03d}"
    return first17 + iso7064_mod11_2(first17)


def credit_code(n: int) -> str:
    first17 = f"91110000{n:09d}"
    total = sum(_USCC_CHARS.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
    return first17 + _USCC_CHARS[(31 - total % 31) % 31]


def bank_card(n: int) -> str:
    body = f"62220200{n:010d}"
    return next(body + check for check in "0123456789" if luhn_ok(body + check))


def merchant(n: int, **over: Any) -> dict[str, Any]:
    return {
        "source_id": f"M{n}",
        "name": f"商户{n}号便利店",
        "credit_code": credit_code(n),
        "legal_person": f"法人{n}",
        "industry": "5411",
        "settlement_account": f"6217{n:012d}",
        "phone": "",
        "wechatpay_sub_mchid": f"16{n:08d}",
        "alipay_smid": f"2088{n:012d}",
        **over,
    }


def person(n: int, **over: Any) -> dict[str, Any]:
    level = n % 3
    return {
        "source_id": f"P{n}",
        "name": f"张{n}",
        "resident_id": resident_id(n),
        "phone": f"138{n % 10**8:08d}",
        "kyc_level": str(level),
        "bank_card": bank_card(n) if level == 2 else "",
        **over,
    }


def balance(
    source_id: str,
    person_source_id: str,
    amount_minor: int,
    subaccount: str = "balance",
    currency: str = "CNY",
    merchant_source_id: str = "",
) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "person_source_id": person_source_id,
        "subaccount": subaccount,
        "merchant_source_id": merchant_source_id,
        "amount_minor": str(amount_minor),
        "currency": currency,
    }


def write_csv(path: Path, fields: list[str], rows: Iterable[dict[str, Any]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@dataclass(frozen=True)
class Dataset:
    merchants: Path
    persons: Path
    balances: Path
    control: Path
    expected: dict[tuple[str, str, str], int]  # (person source id, subaccount, currency) → amount
    balance_rows: int


def clean_dataset(root: Path, *, base: int, merchants: int, persons: int, control_delta_minor: int = 0) -> Dataset:
    """Valid files: every person has a balance, every third a prepaid card at a merchant, every fifth points.
    Streams rows to disk (the bench writes a million)."""
    root.mkdir(parents=True, exist_ok=True)
    m_ids = [base + i for i in range(merchants)]
    write_csv(root / "merchants.csv", MERCHANT_FIELDS, (merchant(n) for n in m_ids), encoding="gbk")
    write_jsonl(root / "persons.jsonl", (person(base + i) for i in range(persons)))
    expected: dict[tuple[str, str, str], int] = {}
    totals: dict[str, list[int]] = {}

    def balances() -> Iterator[dict[str, Any]]:
        for i in range(persons):
            p = f"P{base + i}"
            rows = [balance(f"B{base + i}", p, 100 + (i * 7919) % 100_000)]
            if merchants and i % 3 == 0:
                rows.append(balance(f"C{base + i}", p, 5000 + i % 1000, "prepaid", "CNY", f"M{m_ids[i % merchants]}"))
            if i % 5 == 0:
                rows.append(balance(f"X{base + i}", p, 10 * (i % 50), "points", "XXX"))
            for row in rows:
                key = (p, row["subaccount"], row["currency"])
                expected[key] = expected.get(key, 0) + int(row["amount_minor"])
                t = totals.setdefault(row["currency"], [0, 0])
                t[0] += 1
                t[1] += int(row["amount_minor"])
                yield row

    write_csv(root / "balances.csv", BALANCE_FIELDS, balances())
    control_rows = [
        {"record": "merchants", "currency": "", "count": merchants, "amount_minor": 0},
        {"record": "persons", "currency": "", "count": persons, "amount_minor": 0},
    ]
    for currency, (count, total) in sorted(totals.items()):
        delta = control_delta_minor if currency == "CNY" else 0
        control_rows.append({"record": "balances", "currency": currency, "count": count, "amount_minor": total + delta})
    write_csv(root / "control.csv", CONTROL_FIELDS, control_rows)
    return Dataset(
        root / "merchants.csv",
        root / "persons.jsonl",
        root / "balances.csv",
        root / "control.csv",
        expected,
        sum(t[0] for t in totals.values()),
    )
