"""Fee schedule: which rate is in force for a payment, and the fee it costs, in integer fen.

Rounding rule (the one every channel bill we know uses, 四舍五入 to the fen):
    proportional = round_half_up(amount_minor × rate_bps / 10 000)
    fee_minor    = clamp(proportional, min_fee_minor, max_fee_minor) + fixed_fee_minor
computed with integers only. Amounts and every fee term are non-negative, so the fee never is.

Which rate is in force: among the route's rates valid at the payment time (valid_from ≤ t <
valid_until), the most specific wins: merchant-and-industry > merchant > industry > route default.
Two rates of the same specificity may not overlap in time (checked on write), so the choice is
unique. The chosen rate is returned with the quote so settlement can record the channel cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.routing.domain.errors import FieldError
from services.routing.domain.model import INDUSTRY_RE, MERCHANT_ID_MAX_LENGTH

BPS_DENOMINATOR = 10_000
RATE_BPS_MAX = 10_000  # 100 %
FEE_MINOR_MAX = 10**12  # a per-transaction bound that still fits bigint after any multiplication


@dataclass(frozen=True, slots=True)
class FeeRate:
    rate_id: str
    route_id: str
    rate_bps: int
    valid_from: datetime
    valid_until: datetime | None = None  # exclusive; None = open-ended
    min_fee_minor: int = 0
    max_fee_minor: int | None = None
    fixed_fee_minor: int = 0
    industry: str | None = None  # applies only to merchants of this industry
    merchant_id: str | None = None  # a negotiated rate for one merchant

    @property
    def specificity(self) -> int:
        return (2 if self.merchant_id is not None else 0) + (1 if self.industry is not None else 0)

    @property
    def basis(self) -> str:
        """Why this rate applies, for explanations: 'merchant+industry', 'merchant', 'industry', 'route'."""
        parts = [p for p, on in (("merchant", self.merchant_id), ("industry", self.industry)) if on]
        return "+".join(parts) or "route"

    def in_force(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    def applies_to(self, merchant_id: str, industry: str | None) -> bool:
        if self.merchant_id is not None and self.merchant_id != merchant_id:
            return False
        return self.industry is None or self.industry == industry

    def same_key(self, other: FeeRate) -> bool:
        return (self.route_id, self.merchant_id, self.industry) == (
            other.route_id,
            other.merchant_id,
            other.industry,
        )

    def overlaps(self, other: FeeRate) -> bool:
        """True when the two validity periods [from, until) share an instant."""
        self_ends_after = other.valid_until is None or self.valid_from < other.valid_until
        other_ends_after = self.valid_until is None or other.valid_from < self.valid_until
        return self_ends_after and other_ends_after

    def validate(self) -> list[FieldError]:
        errors: list[FieldError] = []
        if not 0 <= self.rate_bps <= RATE_BPS_MAX:
            errors.append(FieldError("rate_bps", f"must be between 0 and {RATE_BPS_MAX}"))
        if not 0 <= self.min_fee_minor <= FEE_MINOR_MAX:
            errors.append(FieldError("min_fee_minor", "must be zero or positive"))
        if self.max_fee_minor is not None and not self.min_fee_minor <= self.max_fee_minor <= FEE_MINOR_MAX:
            errors.append(FieldError("max_fee_minor", "must be at least min_fee_minor"))
        if not 0 <= self.fixed_fee_minor <= FEE_MINOR_MAX:
            errors.append(FieldError("fixed_fee_minor", "must be zero or positive"))
        if self.valid_from.tzinfo is None:
            errors.append(FieldError("valid_from", "must carry a timezone offset"))
        if self.valid_until is not None:
            if self.valid_until.tzinfo is None:
                errors.append(FieldError("valid_until", "must carry a timezone offset"))
            elif self.valid_from.tzinfo is not None and self.valid_until <= self.valid_from:
                errors.append(FieldError("valid_until", "must be after valid_from"))
        if self.industry is not None and not INDUSTRY_RE.match(self.industry):
            errors.append(FieldError("industry", "lowercase code such as 'education' or '8211'"))
        if self.merchant_id is not None and not 0 < len(self.merchant_id) <= MERCHANT_ID_MAX_LENGTH:
            errors.append(FieldError("merchant_id", f"1–{MERCHANT_ID_MAX_LENGTH} characters"))
        return errors


@dataclass(frozen=True, slots=True)
class FeeQuote:
    """The fee a payment would cost on a route, and the rate it was computed from."""

    rate_id: str
    rate_bps: int
    basis: str
    fee_minor: int
    min_fee_minor: int
    max_fee_minor: int | None
    fixed_fee_minor: int
    valid_from: datetime
    valid_until: datetime | None

    def describe(self) -> str:
        terms = [f"{self.rate_bps} bps"]
        if self.min_fee_minor:
            terms.append(f"min {self.min_fee_minor}")
        if self.max_fee_minor is not None:
            terms.append(f"max {self.max_fee_minor}")
        if self.fixed_fee_minor:
            terms.append(f"+{self.fixed_fee_minor} fixed")
        return f"fee {self.fee_minor} fen ({', '.join(terms)}; {self.basis} rate {self.rate_id})"


def round_half_up_div(numerator: int, denominator: int) -> int:
    """Integer division rounding halves away from zero, for non-negative numerators."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("round_half_up_div expects numerator >= 0 and denominator > 0")
    return (2 * numerator + denominator) // (2 * denominator)


def compute_fee_minor(amount_minor: int, rate: FeeRate) -> int:
    if amount_minor < 0:
        raise ValueError("amount_minor must be non-negative")
    proportional = round_half_up_div(amount_minor * rate.rate_bps, BPS_DENOMINATOR)
    clamped = max(proportional, rate.min_fee_minor)
    if rate.max_fee_minor is not None:
        clamped = min(clamped, rate.max_fee_minor)
    return clamped + rate.fixed_fee_minor


def rate_in_force(
    rates: Iterable[FeeRate], *, route_id: str, merchant_id: str, industry: str | None, at: datetime
) -> FeeRate | None:
    """The most specific rate in force; among equals (only possible with overlapping data) the latest start."""
    best: FeeRate | None = None
    for rate in rates:
        if rate.route_id != route_id or not rate.in_force(at) or not rate.applies_to(merchant_id, industry):
            continue
        if best is None or (rate.specificity, rate.valid_from, rate.rate_id) > (
            best.specificity,
            best.valid_from,
            best.rate_id,
        ):
            best = rate
    return best


def quote(rate: FeeRate, amount_minor: int) -> FeeQuote:
    return FeeQuote(
        rate_id=rate.rate_id,
        rate_bps=rate.rate_bps,
        basis=rate.basis,
        fee_minor=compute_fee_minor(amount_minor, rate),
        min_fee_minor=rate.min_fee_minor,
        max_fee_minor=rate.max_fee_minor,
        fixed_fee_minor=rate.fixed_fee_minor,
        valid_from=rate.valid_from,
        valid_until=rate.valid_until,
    )


def find_overlap(existing: Iterable[FeeRate], candidate: FeeRate) -> FeeRate | None:
    """An existing rate with the same route/merchant/industry whose validity overlaps the candidate's."""
    for rate in existing:
        if rate.rate_id != candidate.rate_id and rate.same_key(candidate) and rate.overlaps(candidate):
            return rate
    return None
