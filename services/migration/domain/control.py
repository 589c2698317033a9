"""Control totals (as banks send them with a file) and the reconciliation that gates finalisation.

Control file (CSV, header `record,currency,count,amount_minor`): one `merchants` and one `persons` line with
the row counts, one `balances` line per currency with the row count and Σ amount_minor of the money, points
and prepaid rows, and one `credit` line per currency with the credit rows (Σ owed). The source system
produces it independently of the data files, so a truncated or doubled export shows as a difference.
Credit totals are kept under the key `<currency>:credit` (`money_key`): owed money is not money held.
Coupons: one `coupons` line per currency with the coupon rows and Σ face_value_minor (kept apart in
`Control.coupons`: a coupon is a promise of a discount, not money in the ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.migration.domain.rows import COUPON_CURRENCIES, CURRENCIES, Kind

CONTROL_HEADER = ("record", "currency", "count", "amount_minor")
CREDIT_RECORD = "credit"
COUPONS_RECORD = "coupons"


def money_key(currency: str, credit: bool) -> str:
    """Where a total is kept in the control, the report and the reconciliation."""
    return f"{currency}:{CREDIT_RECORD}" if credit else currency


class ControlInvalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Control:
    counts: dict[str, int]  # kind → rows in the file
    balances: dict[str, tuple[int, int]]  # currency → (rows, Σ amount_minor)
    coupons: dict[str, tuple[int, int]] = field(default_factory=dict)  # currency → (rows, Σ face_value_minor)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"counts": self.counts, "balances": {c: list(v) for c, v in self.balances.items()}}
        if self.coupons:  # absent otherwise, so a run recorded before coupons keeps its fingerprint
            body["coupons"] = {c: list(v) for c, v in self.coupons.items()}
        return body

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Control:
        return cls(
            dict(value["counts"]),
            {c: (int(v[0]), int(v[1])) for c, v in value["balances"].items()},
            {c: (int(v[0]), int(v[1])) for c, v in (value.get("coupons") or {}).items()},
        )


def parse_control(records: list[dict[str, str]]) -> Control:
    counts: dict[str, int] = {}
    balances: dict[str, tuple[int, int]] = {}
    coupons: dict[str, tuple[int, int]] = {}
    for record in records:
        try:
            name = record["record"].strip()
            if name == COUPONS_RECORD:
                currency = (record.get("currency") or "").strip().upper()
                count, amount = int(record["count"]), int(record.get("amount_minor") or 0)
                if count < 0 or amount < 0 or currency not in COUPON_CURRENCIES or currency in coupons:
                    raise ControlInvalid(f"coupons control {record!r}: negative, or unknown or repeated currency")
                coupons[currency] = (count, amount)
                continue
            kind = Kind.BALANCES if name == CREDIT_RECORD else Kind(name)
            count = int(record["count"])
            amount = int(record.get("amount_minor") or 0)
            currency = (record.get("currency") or "").strip().upper()
        except (KeyError, ValueError) as exc:
            raise ControlInvalid(f"control record {record!r}: {exc}") from None
        if count < 0 or amount < 0:
            raise ControlInvalid("control counts and totals are never negative")
        if kind is Kind.BALANCES:
            key = money_key(currency, name == CREDIT_RECORD)
            if currency not in CURRENCIES or key in balances or (name == CREDIT_RECORD and currency == "XXX"):
                raise ControlInvalid(f"{name} control: unknown or repeated currency {currency!r}")
            balances[key] = (count, amount)
        elif kind.value in counts:
            raise ControlInvalid(f"{kind.value} control given twice")
        else:
            counts[kind.value] = count
    return Control(counts, balances, coupons)


@dataclass(slots=True)
class Reconciliation:
    """Source (what the files hold), Juhe (what was written), control (what the source system declared),
    the suspense per currency; `differences` lists every reason finalisation is refused."""

    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def reconcile(
    control: Control,
    *,
    file_counts: dict[str, int],
    file_totals: dict[str, tuple[int, int]],
    written_totals: dict[str, int],
    suspense_minor: dict[str, int],
    rejected: int,
    coupon_file_totals: dict[str, tuple[int, int]] | None = None,
    coupon_written_totals: dict[str, tuple[int, int]] | None = None,
) -> Reconciliation:
    """Finalisation is allowed only when every figure agrees: nothing rejected, file = control per kind and
    currency, written = control total, and every suspense account at zero."""
    result = Reconciliation()
    if rejected:
        result.differences.append(f"{rejected} rows rejected: fix them and run again, or reverse this run")
    for kind, declared in control.counts.items():
        if file_counts.get(kind, 0) != declared:
            result.differences.append(f"{kind}: file has {file_counts.get(kind, 0)} rows, control says {declared}")
    currencies = set(control.balances) | set(file_totals) | set(written_totals) | set(suspense_minor)
    for currency in sorted(currencies):
        count, total = control.balances.get(currency, (0, 0))
        in_file = file_totals.get(currency, (0, 0))
        if in_file != (count, total):
            result.differences.append(
                f"{currency}: file has {in_file[0]} rows Σ {in_file[1]}, control {count} Σ {total}"
            )
        if written_totals.get(currency, 0) != total:
            result.differences.append(f"{currency}: written Σ {written_totals.get(currency, 0)} ≠ control Σ {total}")
        if suspense_minor.get(currency, 0) != 0:
            result.differences.append(f"{currency}: suspense holds {suspense_minor[currency]}, not 0")
    coupon_files, coupons_written = coupon_file_totals or {}, coupon_written_totals or {}
    for currency in sorted(set(control.coupons) | set(coupon_files) | set(coupons_written)):
        promised = control.coupons.get(currency, (0, 0))
        for what, have in (
            ("file has", coupon_files.get(currency, (0, 0))),
            ("marketing holds", coupons_written.get(currency, (0, 0))),
        ):
            if have != promised:
                result.differences.append(
                    f"coupons {currency}: {what} {have[0]} Σ {have[1]}, control {promised[0]} Σ {promised[1]}"
                )
    return result
