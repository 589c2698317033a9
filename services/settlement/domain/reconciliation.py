"""Matching a channel's bill against Juhe's own records (对账), one bill line at a time.

Why streaming: a channel bill can hold millions of lines, so the matcher indexes only Juhe's records
of the day (compact tuples) and classifies each bill line as it arrives; the bill itself is never held
in memory. What is left in the index at the end is what the channel does not know about. Records,
lines and results are named tuples: at a million lines a day, building them is most of the cost.
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


class Result(NamedTuple):
    outcome: Outcome
    resolution: Resolution
    kind: str
    key: str
    record: Record | None
    line: Line | None
    detail: str = ""


def channel_says_succeeded(line: Line) -> bool:
    return not (line.kind == "refund" and line.status.upper() in REFUND_PENDING_WORDS)


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
            return Result(Outcome.MISSING_IN_JUHE, Resolution.MANUAL, line.kind, line.key, None, line,
                          "the channel has this line, Juhe has no record")  # fmt: skip
        channel_ok = channel_says_succeeded(line)
        if (record.status == "succeeded") != channel_ok:
            requery = channel_ok and record.kind == "payment"
            return Result(
                Outcome.STATUS_MISMATCH,
                Resolution.CASHIER_REQUERY if requery else Resolution.MANUAL,
                line.kind, line.key, record, line,
                f"Juhe {record.status}, channel {line.status}",
            )  # fmt: skip
        if record.amount_minor != line.amount_minor:
            return Result(Outcome.AMOUNT_MISMATCH, Resolution.MANUAL, line.kind, line.key, record, line,
                          f"Juhe {record.amount_minor}, channel {line.amount_minor}")  # fmt: skip
        if record.fee_minor is not None and record.kind == "payment" and record.fee_minor != line.fee_minor:
            return Result(Outcome.FEE_MISMATCH, Resolution.MANUAL, line.kind, line.key, record, line,
                          f"expected fee {record.fee_minor}, channel charged {line.fee_minor}")  # fmt: skip
        return Result(Outcome.MATCHED, Resolution.NONE, line.kind, line.key, record, line)

    def leftovers(self) -> Iterator[Result]:
        """Records Juhe counts as money moved that the bill never mentioned."""
        for record in self._by_key.values():
            if record.status == "succeeded":
                yield Result(Outcome.MISSING_AT_CHANNEL, Resolution.MANUAL, record.kind, record.key, record, None,
                             "Juhe has this as succeeded, the channel bill does not")  # fmt: skip
        self._by_key.clear()
        self._by_channel_no.clear()
