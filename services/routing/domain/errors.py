"""The routing service's error catalogue: one stable `code` per business error.

Clients (the cashier above all) switch on `code`; titles are for people. `retryable` says whether the
same request can succeed later without a change: `channel_unavailable` can (a circuit closes, a new
day resets a volume cap, opening hours begin), `no_route_available` cannot (nothing is configured or
allowed for this payment). Validation errors carry an `errors` extension: a list of
`{"field": ..., "message": ...}` so an admin UI can point at the bad field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.errors import COMMON_ERRORS, ErrorSpec, Problem

RULE_INVALID = ErrorSpec("rule_invalid", 422, "The routing rule is not valid")
FEE_RATE_INVALID = ErrorSpec("fee_rate_invalid", 422, "The fee rate is not valid")
CHANNEL_ROUTE_INVALID = ErrorSpec("channel_route_invalid", 422, "The channel route is not valid")
CONTRACT_INVALID = ErrorSpec("contract_invalid", 422, "The merchant contract is not valid")
ROUTING_SETTINGS_INVALID = ErrorSpec("routing_settings_invalid", 422, "The routing settings are not valid")
FEE_RATE_OVERLAP = ErrorSpec(
    "fee_rate_overlap", 409, "Another fee rate for the same route, merchant and industry is in force then"
)
CHANNEL_ROUTE_EXISTS = ErrorSpec("channel_route_exists", 409, "A channel route with this id already exists")
VERSION_CONFLICT = ErrorSpec(
    "version_conflict", 409, "The resource was changed by someone else; reload it and apply the change again"
)
CHANNEL_ROUTE_NOT_FOUND = ErrorSpec("channel_route_not_found", 404, "No such channel route")
FEE_RATE_NOT_FOUND = ErrorSpec("fee_rate_not_found", 404, "No such fee rate")
CONTRACT_NOT_FOUND = ErrorSpec("contract_not_found", 404, "No such merchant contract")
RULE_NOT_FOUND = ErrorSpec("rule_not_found", 404, "No such routing rule")
NO_ROUTE_AVAILABLE = ErrorSpec("no_route_available", 422, "No channel route is configured or allowed for this payment")
CHANNEL_UNAVAILABLE = ErrorSpec(
    "channel_unavailable",
    503,
    "Every route that could take this payment is unavailable right now",
    retryable=True,
)
# Special-rate programmes (domain/special_rates.py).
MERCHANT_PROFILE_INVALID = ErrorSpec("merchant_profile_invalid", 422, "The merchant profile is not valid")
MERCHANT_PROFILE_NOT_FOUND = ErrorSpec(
    "merchant_profile_not_found", 404, "No profile for this merchant: set its entity type and industry code first"
)
SPECIAL_RATE_PROGRAMME_NOT_FOUND = ErrorSpec("special_rate_programme_not_found", 404, "No such special-rate programme")
SPECIAL_RATE_APPLICATION_NOT_FOUND = ErrorSpec(
    "special_rate_application_not_found", 404, "No such special-rate application"
)
SPECIAL_RATE_APPLICATION_INVALID = ErrorSpec(
    "special_rate_application_invalid", 422, "The special-rate application is not valid"
)
SPECIAL_RATE_NOT_ELIGIBLE = ErrorSpec(
    "special_rate_not_eligible", 422, "The merchant's profile does not meet this programme's criteria"
)
SPECIAL_RATE_DOCUMENTS_MISSING = ErrorSpec(
    "special_rate_documents_missing", 422, "The application lacks documents the programme requires"
)
SPECIAL_RATE_APPLICATION_STATE_CONFLICT = ErrorSpec(
    "special_rate_application_state_conflict", 409, "The application's status does not allow this change"
)
SPECIAL_RATE_NO_CONTRACTED_ROUTE = ErrorSpec(
    "special_rate_no_contracted_route", 422, "The merchant has no enabled contract on a route of this channel"
)

ROUTING_ERRORS: tuple[ErrorSpec, ...] = (
    RULE_INVALID,
    FEE_RATE_INVALID,
    CHANNEL_ROUTE_INVALID,
    CONTRACT_INVALID,
    ROUTING_SETTINGS_INVALID,
    FEE_RATE_OVERLAP,
    CHANNEL_ROUTE_EXISTS,
    VERSION_CONFLICT,
    CHANNEL_ROUTE_NOT_FOUND,
    FEE_RATE_NOT_FOUND,
    CONTRACT_NOT_FOUND,
    RULE_NOT_FOUND,
    NO_ROUTE_AVAILABLE,
    CHANNEL_UNAVAILABLE,
    MERCHANT_PROFILE_INVALID,
    MERCHANT_PROFILE_NOT_FOUND,
    SPECIAL_RATE_PROGRAMME_NOT_FOUND,
    SPECIAL_RATE_APPLICATION_NOT_FOUND,
    SPECIAL_RATE_APPLICATION_INVALID,
    SPECIAL_RATE_NOT_ELIGIBLE,
    SPECIAL_RATE_DOCUMENTS_MISSING,
    SPECIAL_RATE_APPLICATION_STATE_CONFLICT,
    SPECIAL_RATE_NO_CONTRACTED_ROUTE,
)
ALL_ERRORS: tuple[ErrorSpec, ...] = COMMON_ERRORS + ROUTING_ERRORS


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a submitted object is invalid, pointing at the field (dotted path) at fault."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def invalid(spec: ErrorSpec, errors: Sequence[FieldError], **extensions: Any) -> Problem:
    """A validation Problem listing every field error at once, so an admin fixes them in one pass."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or spec.title
    return Problem(spec, detail, errors=[e.as_dict() for e in errors], **extensions)


def raise_if_invalid(spec: ErrorSpec, errors: Sequence[FieldError]) -> None:
    if errors:
        raise invalid(spec, errors)
