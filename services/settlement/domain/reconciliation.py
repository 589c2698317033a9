"""Matching a channel's bill against Juhe's own records (对账): the rules, free of any database.

`classify` is the rule for one (record, bill line) pair and `Matcher` the rule for which record a line
meets: by (kind, key) first, a payment line by its channel trade number second, each record at most
once, in bill order. Whatever is left is what the channel does not know about.

The service itself does not run `Matcher` over a day (its index would hold every record of the day in
Python, ≈ 0.9 KB each): `store/reconciliation_staging.py` runs the same rules as set-based SQL over a
staged copy of the bill, so memory stays flat at any bill size. `Matcher` stays as the executable
specification the SQL is tested against (tests/integration/test_reconciliation_staging.py) and for
small, in-memory uses. Records, lines and results are named tuples: at a million lines a day, building
them is most of the cost.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import NamedTuple


class Outcome(enum.StrEnum):
    MATCHED = "matched"
    MISSING_IN_JUHE = "missing_in_juhe"
    MISSING_AT_CHANNEL = "missing_at_channel"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    FEE_MISMATCH = "fee_mismatch"


class Resolution(enum.StrEnum):
    NONE = "none"  # nothing to do (matched)
    MANUAL = "manual"  # listed for a person
    CASHIER_REQUERY = "cashier_requery"  # Juhe saw failure, the channel success: the cashier must re-query


# Channel words for a refund line still in flight; every other refund line and every payment line means
# the money moved (bills list paid orders only).
REFUND_PENDING_WORDS = frozenset({"PROCESSING", "退款中"})


class Record(NamedTuple):
    """Juhe's own view of one payment attempt or refund, kept from cashier events."""

    kind: str  # payment | refund
    key: str  # out_trade_no (payment attempt) or out_refund_no (refund id)
    channel_trade_no: str | None
    payment_id: str
    refund_id: str | None
    merchant_order_no: str | None
    amount_minor: int
    fee_minor: int | None
    status: str  # succeeded | failed | closed | processing | pending


class Line(NamedTuple):
    kind: str
    key: str
    channel_trade_no: str
    amount_minor: int
    fee_minor: int
    status: str  # the channel's raw word
    livemode: bool | None = None  # the mode of the configuration the bill came from (the cashier's X-Bill-Livemode)


class Result(NamedTuple):
    outcome: Outcome
    resolution: Resolution
    kind: str
    key: str
    record: Record | None
    line: Line | None
    detail: str = ""


MISSING_IN_JUHE_DETAIL = "the channel has this line, Juhe has no record"
MISSING_AT_CHANNEL_DETAIL = "Juhe has this as succeeded, the channel bill does not"


def channel_says_succeeded(line: Line) -> bool:
    return not (line.kind == "refund" and line.status.upper() in REFUND_PENDING_WORDS)


def classify(record: Record, line: Line) -> Result:
    """The outcome of one bill line that met its record. First disagreement wins: status, amount, fee
    (the fee only when the payment event carried the routing fee in force)."""
    channel_ok = channel_says_succeeded(line)
    if (record.status == "succeeded") != channel_ok:
        requery = channel_ok and record.kind == "payment"
        return Result(
            Outcome.STATUS_MISMATCH,
            Resolution.CASHIER_REQUERY if requery else Resolution.MANUAL,
            line.kind,
            line.key,
            record,
            line,
            f"Juhe {record.status}, channel {line.status}",
        )
    if record.amount_minor != line.amount_minor:
        return Result(
            Outcome.AMOUNT_MISMATCH,
            Resolution.MANUAL,
            line.kind,
            line.key,
            record,
            line,
            f"Juhe {record.amount_minor}, channel {line.amount_minor}",
        )
    if record.fee_minor is not None and record.kind == "payment" and record.fee_minor != line.fee_minor:
        return Result(
            Outcome.FEE_MISMATCH,
            Resolution.MANUAL,
            line.kind,
            line.key,
            record,
            line,
            f"expected fee {record.fee_minor}, channel charged {line.fee_minor}",
        )
    return Result(Outcome.MATCHED, Resolution.NONE, line.kind, line.key, record, line)


def settled_minor(line: Line) -> int:
    """What this bill line moves between the channel and the escrow account (docs/ledger.md §3.5), signed:
    a payment brings its amount less the channel's fee, a refund the channel carried out takes back its
    amount less the fee the channel returns (the mirror of §3.1/§3.3 on channel_clearing), a refund still
    in flight nothing yet. Fees are taken by size: WeChat Pay prints a refund's returned fee negative,
    other channels positive."""
    net = line.amount_minor - abs(line.fee_minor)
    if line.kind == "refund":
        return -net if channel_says_succeeded(line) else 0
    return net


class Matcher:
    """Index the records once, then `match` each bill line; `leftovers` yields the unmatched records."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._by_key: dict[tuple[str, str], Record] = {}
        self._by_channel_no: dict[tuple[str, str], tuple[str, str]] = {}
        for record in records:
            self.add(record)

    def add(self, record: Record) -> None:
        self._by_key[(record.kind, record.key)] = record
        if record.channel_trade_no and record.kind == "payment":
            self._by_channel_no[(record.kind, record.channel_trade_no)] = (record.kind, record.key)

    def _take(self, line: Line) -> Record | None:
        record = self._by_key.pop((line.kind, line.key), None)
        if record is None and line.kind == "payment" and line.channel_trade_no:
            index_key = self._by_channel_no.get((line.kind, line.channel_trade_no))
            if index_key is not None:
                record = self._by_key.pop(index_key, None)
        return record

    def match(self, line: Line) -> Result:
        record = self._take(line)
        if record is None:
            return Result(
                Outcome.MISSING_IN_JUHE, Resolution.MANUAL, line.kind, line.key, None, line, MISSING_IN_JUHE_DETAIL
            )
        return classify(record, line)

    def leftovers(self) -> Iterator[Result]:
        """Records Juhe counts as money moved that the bill never mentioned."""
        for record in self._by_key.values():
            if record.status == "succeeded":
                yield Result(
                    Outcome.MISSING_AT_CHANNEL,
                    Resolution.MANUAL,
                    record.kind,
                    record.key,
                    record,
                    None,
                    MISSING_AT_CHANNEL_DETAIL,
                )
        self._by_key.clear()
        self._by_channel_no.clear()
