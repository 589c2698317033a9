"""The chart of accounts (domain/chart.py) is the one definition of every kind's code: each code and kind once,
the normal side the code's class gives (so accounts opened from the chart report as they did before it), and the
same codes as the table of docs/ledger.md."""

from __future__ import annotations

import re
from pathlib import Path

from services.ledger.domain.accounts import NormalBalance
from services.ledger.domain.chart import BY_CODE, BY_KIND, CHART, by_kind
from services.ledger.wallet.domain.postings import SUBACCOUNT_CHART

DOC = Path(__file__).resolve().parents[4] / "docs" / "ledger.md"


def test_each_code_and_kind_once_with_the_normal_side_of_its_class() -> None:
    assert len(BY_CODE) == len(BY_KIND) == len(CHART)
    for entry in CHART:
        assert entry.normal_balance is NormalBalance.for_code(entry.code), entry
        assert by_kind(entry.kind) is entry
    assert by_kind("custom_kind") is None
    assert set(SUBACCOUNT_CHART.values()) <= set(CHART)


def test_the_documented_chart_names_the_same_codes() -> None:
    rows = re.findall(r"^\| (\d{4}) \| `([a-z0-9_]+)` \|", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert rows, "docs/ledger.md has a chart table"
    for code, kind in rows:
        assert BY_KIND[kind].code == code, (code, kind)
