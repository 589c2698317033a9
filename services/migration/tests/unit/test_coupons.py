"""Coupon rows and their control totals: every rejection reason of the schema, the control's coupons lines,
and a reconciliation that tells file, marketing and control apart."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from libs.common.services import REPO_ROOT
from services.migration.domain import errors as e
from services.migration.domain import rows as r
from services.migration.domain.control import Control, ControlInvalid, parse_control, reconcile


def coupon(**over: Any) -> dict[str, Any]:
    return {
        "source_id": "C1",
        "person_source_id": "P1",
        "code": "OLD-0001",
        "face_value_minor": "500",
        "currency": "cny",
        "threshold_minor": "2000",
        "valid_from": "2026-01-01T00:00:00+08:00",
        "valid_until": "2027-01-01T00:00:00+08:00",
        "merchant_source_id": "",
        **over,
    }


def test_a_coupon_row_parses_with_its_code_kept() -> None:
    row = r.parse(r.Kind.COUPONS, coupon(merchant_source_id="M1"))
    assert isinstance(row, r.CouponRow)
    assert (row.code, row.face_value_minor, row.currency, row.threshold_minor, row.merchant_source_id) == (
        "OLD-0001",
        500,
        "CNY",
        2000,
        "M1",
    )
    assert row.valid_until.utcoffset() is not None
    no_threshold = r.parse_coupon(coupon(threshold_minor="", merchant_source_id=None))
    assert (no_threshold.threshold_minor, no_threshold.merchant_source_id) == (0, None)


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"code": "ab"}, e.BAD_FIELD),
        ({"code": "OLD 0001"}, e.BAD_FIELD),
        ({"face_value_minor": "0"}, e.BAD_AMOUNT),
        ({"face_value_minor": "-5"}, e.BAD_AMOUNT),
        ({"face_value_minor": "5.00"}, e.BAD_AMOUNT),
        ({"threshold_minor": "-1"}, e.BAD_AMOUNT),
        ({"currency": "XXX"}, e.BAD_FIELD),
        ({"valid_until": "2027-01-01T00:00:00"}, e.BAD_FIELD),
        ({"valid_from": "yesterday"}, e.BAD_FIELD),
        ({"valid_until": "2025-12-31T00:00:00+08:00"}, e.BAD_FIELD),
        ({"person_source_id": ""}, e.MISSING_FIELD),
        ({"code": None}, e.MISSING_FIELD),
    ],
)
def test_every_bad_coupon_field_is_rejected_with_its_reason(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(r.RowRejected) as caught:
        r.parse_coupon(coupon(**over))
    assert caught.value.reason == reason


def test_control_coupons_lines_per_currency() -> None:
    control = parse_control(
        [
            {"record": "persons", "currency": "", "count": "3", "amount_minor": "0"},
            {"record": "coupons", "currency": "CNY", "count": "2", "amount_minor": "1300"},
            {"record": "coupons", "currency": "hkd", "count": "1", "amount_minor": "300"},
        ]
    )
    assert control.coupons == {"CNY": (2, 1300), "HKD": (1, 300)} and control.balances == {}
    assert Control.from_json(control.as_json()) == control
    assert "coupons" not in parse_control([{"record": "persons", "count": "1"}]).as_json()  # old fingerprints hold
    for bad in ({"currency": "CNY", "count": "-1"}, {"currency": "XXX", "count": "1"}):
        with pytest.raises(ControlInvalid):
            parse_control([{"record": "coupons", "amount_minor": "0", **bad}])
    with pytest.raises(ControlInvalid):
        parse_control([{"record": "coupons", "currency": "CNY", "count": "1", "amount_minor": "5"}] * 2)


def test_reconciliation_of_coupons_file_marketing_and_control() -> None:
    control = Control({"persons": 3}, {}, {"CNY": (2, 1300)})

    def differences(file_totals: dict[str, tuple[int, int]], written: dict[str, tuple[int, int]]) -> list[str]:
        verdict = reconcile(
            control,
            file_counts={"persons": 3},
            file_totals={},
            written_totals={},
            suspense_minor={},
            rejected=0,
            coupon_file_totals=file_totals,
            coupon_written_totals=written,
        )
        return verdict.differences

    assert differences({"CNY": (2, 1300)}, {"CNY": (2, 1300)}) == []
    assert differences({"CNY": (2, 1301)}, {"CNY": (2, 1300)}) == ["coupons CNY: file has 2 Σ 1301, control 2 Σ 1300"]
    assert differences({"CNY": (2, 1300)}, {"CNY": (1, 500)}) == [
        "coupons CNY: marketing holds 1 Σ 500, control 2 Σ 1300"
    ]
    assert differences({"CNY": (2, 1300), "USD": (1, 1)}, {"CNY": (2, 1300)}) == [
        "coupons USD: file has 1 Σ 1, control 0 Σ 0"
    ]


def test_the_documented_coupons_example_is_clean() -> None:
    path = Path(REPO_ROOT) / "docs" / "migration" / "coupons.csv"
    with path.open(encoding="utf-8") as f:
        rows = [r.parse_coupon(raw) for raw in csv.DictReader(f)]
    assert [(c.source_id, c.person_source_id, c.merchant_source_id) for c in rows] == [
        ("C1", "P3", None),
        ("C2", "P4", "M1"),
    ]
