"""Special-rate programmes (特殊费率): the catalogue, who is eligible, applications, and what they save.

The channels run programmes that lower the fee for some kinds of merchants (education, public
utilities, parking, canteens, micro merchants…). This module holds the pure rules:

* **Catalogue**: programmes per channel, shipped as data (`services/routing/data/`), each with the
  eligible entity types and industry codes (ISO 18245 MCC), the rate (bps) and per-payment cap, when
  the programme takes applications, how long an approval lasts, the documents it asks for and how it is
  renewed. The shipped catalogue is an EXAMPLE (`example: true` on it and on every programme).
* **Eligibility** from the merchant's profile (entity type, industry code), with the reasons it fails.
* **Applications**: `draft → submitted → approved | rejected`, each change a named transition; an
  approved one carries the period its rate is in force (the flow turns it into merchant fee rates, so
  the routing decision quotes it from its start).
* **Savings projection**: the fees the merchant's succeeded payments of a period actually cost, against
  what they would have cost under each eligible programme (same rounding as every quote:
  `fees.compute_fee_minor`), in integer fen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.routing.domain.errors import FieldError
from services.routing.domain.fees import RATE_BPS_MAX, FeeRate, compute_fee_minor

ENTITY_TYPES = ("individual", "individual_business", "company", "public_institution", "nonprofit")
INDUSTRY_CODE_RE = re.compile(r"^[0-9]{4}$")  # ISO 18245 merchant category code
PROGRAMME_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}$")
DOCUMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
DOCUMENTS_MAX = 20
REASON_LENGTH_MAX = 500
PROJECTION_WINDOW_DAYS = 30
PROJECTION_CURRENCY = "CNY"  # the programmes are the Chinese channels'; other currencies are not projected


class ApplicationStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class MerchantProfile:
    merchant_id: str
    entity_type: str
    industry_code: str

    def validate(self) -> list[FieldError]:
        errors = []
        if self.entity_type not in ENTITY_TYPES:
            errors.append(FieldError("entity_type", f"one of {', '.join(ENTITY_TYPES)}"))
        if not INDUSTRY_CODE_RE.match(self.industry_code):
            errors.append(FieldError("industry_code", "a four-digit merchant category code (ISO 18245)"))
        return errors


@dataclass(frozen=True, slots=True)
class Programme:
    programme_id: str
    channel: str  # the provider: wechatpay | alipay
    method: str  # routing's payment method whose routes the rate applies to
    name: str
    name_zh: str
    eligible_entity_types: tuple[str, ...]
    eligible_industry_codes: tuple[str, ...]  # empty = any industry
    rate_bps: int
    cap_minor: int | None  # per-payment fee cap
    available_from: datetime
    available_until: datetime | None
    term_days: int
    required_documents: tuple[str, ...]
    renewal: Mapping[str, Any]
    example: bool

    def fee_rate(
        self, *, route_id: str, merchant_id: str, valid_from: datetime, valid_until: datetime | None, rate_id: str = ""
    ) -> FeeRate:
        """The programme as a merchant fee rate on one route (what an approval writes)."""
        return FeeRate(
            rate_id=rate_id,
            route_id=route_id,
            rate_bps=self.rate_bps,
            valid_from=valid_from,
            valid_until=valid_until,
            max_fee_minor=self.cap_minor,
            merchant_id=merchant_id,
        )

    def fee_minor(self, amount_minor: int) -> int:
        rate = self.fee_rate(route_id="", merchant_id="", valid_from=self.available_from, valid_until=None)
        return compute_fee_minor(amount_minor, rate)

    def open_at(self, at: datetime) -> bool:
        return self.available_from <= at and (self.available_until is None or at < self.available_until)


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    example: bool
    notice: str
    programmes: tuple[Programme, ...]

    def get(self, programme_id: str) -> Programme | None:
        return next((p for p in self.programmes if p.programme_id == programme_id), None)


def _time(value: Any, where: str) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"{where}: a time with its offset")
    return parsed


def parse_catalogue(text: str) -> Catalogue:
    """The catalogue file, checked whole: a wrong programme stops the service at start, not a payment."""
    raw = json.loads(text)
    programmes = []
    for i, p in enumerate(raw["programmes"]):
        where = f"programmes[{i}]"
        programme = Programme(
            programme_id=str(p["programme_id"]),
            channel=str(p["channel"]),
            method=str(p["method"]),
            name=str(p["name"]),
            name_zh=str(p.get("name_zh", "")),
            eligible_entity_types=tuple(p["eligible_entity_types"]),
            eligible_industry_codes=tuple(str(c) for c in p["eligible_industry_codes"]),
            rate_bps=int(p["rate_bps"]),
            cap_minor=None if p.get("cap_minor") is None else int(p["cap_minor"]),
            available_from=_time(p["available_from"], f"{where}.available_from"),
            available_until=None
            if p.get("available_until") is None
            else _time(p["available_until"], f"{where}.available_until"),
            term_days=int(p["term_days"]),
            required_documents=tuple(p["required_documents"]),
            renewal=dict(p.get("renewal") or {}),
            example=bool(p.get("example", raw.get("example", False))),
        )
        problems = [
            PROGRAMME_ID_RE.match(programme.programme_id) is None and "programme_id",
            not 0 <= programme.rate_bps <= RATE_BPS_MAX and "rate_bps",
            programme.cap_minor is not None and programme.cap_minor < 0 and "cap_minor",
            not 1 <= programme.term_days <= 3660 and "term_days",
            any(t not in ENTITY_TYPES for t in programme.eligible_entity_types) and "eligible_entity_types",
            any(not INDUSTRY_CODE_RE.match(c) for c in programme.eligible_industry_codes) and "industry codes",
            any(not DOCUMENT_RE.match(d) for d in programme.required_documents) and "required_documents",
        ]
        if any(problems):
            raise ValueError(f"{where} ({programme.programme_id}): invalid {[x for x in problems if x]}")
        programmes.append(programme)
    ids = [p.programme_id for p in programmes]
    if len(set(ids)) != len(ids):
        raise ValueError("programme ids must be unique")
    return Catalogue(
        str(raw.get("catalogue_version", "")),
        bool(raw.get("example", False)),
        str(raw.get("notice", "")),
        tuple(programmes),
    )


# ------------------------------------------------------------------------------------------- eligibility


@dataclass(frozen=True, slots=True)
class Eligibility:
    programme: Programme
    eligible: bool
    reasons: tuple[str, ...]  # why not (empty when eligible)


def eligibility(profile: MerchantProfile, programme: Programme, *, at: datetime) -> Eligibility:
    reasons = []
    if profile.entity_type not in programme.eligible_entity_types:
        reasons.append(f"entity type {profile.entity_type} is not one of {', '.join(programme.eligible_entity_types)}")
    if programme.eligible_industry_codes and profile.industry_code not in programme.eligible_industry_codes:
        reasons.append(
            f"industry code {profile.industry_code} is not one of {', '.join(programme.eligible_industry_codes)}"
        )
    if not programme.open_at(at):
        reasons.append("the programme does not take applications at this time")
    return Eligibility(programme, not reasons, tuple(reasons))


def eligible_programmes(profile: MerchantProfile, catalogue: Catalogue, *, at: datetime) -> list[Programme]:
    return [p for p in catalogue.programmes if eligibility(profile, p, at=at).eligible]


# ------------------------------------------------------------------------------------------ applications


class TransitionRefused(Exception):
    """The application is not in a status that allows this change (409)."""


@dataclass(frozen=True, slots=True)
class Application:
    application_id: str
    merchant_id: str
    programme_id: str
    status: ApplicationStatus
    documents: tuple[str, ...]
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    rejection_reason: str | None = None
    rate_ids: tuple[str, ...] = field(default_factory=tuple)
    version: int = 1

    def _from(self, *allowed: ApplicationStatus, to: ApplicationStatus) -> None:
        if self.status not in allowed:
            raise TransitionRefused(
                f"application {self.application_id} is {self.status.value}, cannot become {to.value}"
            )

    def missing_documents(self, programme: Programme) -> list[str]:
        return [d for d in programme.required_documents if d not in self.documents]

    def submit(self, programme: Programme) -> Application:
        self._from(ApplicationStatus.DRAFT, to=ApplicationStatus.SUBMITTED)
        return replace(self, status=ApplicationStatus.SUBMITTED, version=self.version + 1)

    def approve(self, programme: Programme, *, effective_from: datetime, rate_ids: Sequence[str]) -> Application:
        """In force from `effective_from` for the programme's term (ending earlier if the programme does)."""
        self._from(ApplicationStatus.SUBMITTED, to=ApplicationStatus.APPROVED)
        until = effective_from + timedelta(days=programme.term_days)
        if programme.available_until is not None:
            until = min(until, programme.available_until)
        return replace(
            self,
            status=ApplicationStatus.APPROVED,
            effective_from=effective_from,
            effective_until=until,
            rate_ids=tuple(rate_ids),
            version=self.version + 1,
        )

    def reject(self, reason: str) -> Application:
        self._from(ApplicationStatus.SUBMITTED, to=ApplicationStatus.REJECTED)
        return replace(self, status=ApplicationStatus.REJECTED, rejection_reason=reason, version=self.version + 1)


# ------------------------------------------------------------------------------------------- projection


@dataclass(frozen=True, slots=True)
class PaymentFee:
    """One succeeded payment as routing recorded it from `payment.succeeded` (the fee the route quoted)."""

    payment_id: str
    merchant_id: str
    method: str
    amount_minor: int
    fee_minor: int


@dataclass(frozen=True, slots=True)
class ProgrammeProjection:
    programme_id: str
    method: str
    payment_count: int  # payments of the programme's method (the only ones whose fee would change)
    volume_minor: int
    fees_minor: int  # what those payments cost
    projected_fees_minor: int  # what they would have cost under the programme
    savings_minor: int  # fees − projected (negative: the programme would cost more)


@dataclass(frozen=True, slots=True)
class MerchantProjection:
    merchant_id: str
    payment_count: int
    volume_minor: int
    fees_minor: int
    programmes: tuple[ProgrammeProjection, ...]
    best_savings_minor: int  # the best eligible programme per method, added over methods (never < 0)


def project_merchant(
    merchant_id: str, payments: Iterable[PaymentFee], programmes: Sequence[Programme]
) -> MerchantProjection:
    mine = [p for p in payments if p.merchant_id == merchant_id]
    rows = []
    for programme in programmes:
        covered = [p for p in mine if p.method == programme.method]
        fees = sum(p.fee_minor for p in covered)
        projected = sum(programme.fee_minor(p.amount_minor) for p in covered)
        rows.append(
            ProgrammeProjection(
                programme.programme_id,
                programme.method,
                len(covered),
                sum(p.amount_minor for p in covered),
                fees,
                projected,
                fees - projected,
            )
        )
    best: dict[str, int] = {}
    for row in rows:
        best[row.method] = max(best.get(row.method, 0), row.savings_minor)
    return MerchantProjection(
        merchant_id,
        len(mine),
        sum(p.amount_minor for p in mine),
        sum(p.fee_minor for p in mine),
        tuple(rows),
        sum(best.values()),
    )
