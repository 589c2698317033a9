"""Payment links (收款链接) and the 码牌 printed from them: pure rules, no I/O.

A merchant creates a link once — a fixed amount, or an amount the payer enters within bounds (property fees,
tuition, parking) — with optional payer reference fields (plate number, student id, unit number) and, for a
single-use or limited link, a maximum number of uses. Each payer who opens it gets a fresh checkout session;
a use is a session of the link that is completed or still open, so an abandoned session gives its use back
when it expires, and two payers can never both hold the last use of a link (docs/checkout.md).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from libs.common.errors import ErrorSpec, Problem

PAYMENT_LINK_NOT_FOUND = ErrorSpec("payment_link_not_found", 404, "No such payment link")
PAYMENT_LINK_INACTIVE = ErrorSpec("payment_link_inactive", 409, "The payment link was deactivated or has expired")
PAYMENT_LINK_USED_UP = ErrorSpec(
    "payment_link_used_up", 409, "The payment link reached its maximum number of uses (an unpaid one may free up)"
)
PAYMENT_LINK_AMOUNT_INVALID = ErrorSpec(
    "payment_link_amount_invalid", 422, "The amount is missing or outside what this payment link accepts"
)
PAYMENT_LINK_FIELD_INVALID = ErrorSpec(
    "payment_link_field_invalid", 422, "A payer reference field is missing or invalid"
)

PAYER_FIELDS_MAX = 3
USES_MAX = 1_000_000
LINK_SLUG_PREFIX = "pl_"  # the public part of `/pay/<slug>`: 128 random bits, not the link's id
SESSION_EXPIRY_SECONDS = 15 * 60
AMOUNT_MAX_MINOR = 100_000_000  # ¥1,000,000: the bound of a payer-entered amount when the merchant sets none


class LinkStatus(enum.StrEnum):
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class PayerField(enum.StrEnum):
    """Reference fields a payer fills in; the page labels them in the payer's language, the value is validated
    here and stored on the payment's metadata under the same key."""

    PLATE_NUMBER = "plate_number"
    STUDENT_ID = "student_id"
    UNIT_NUMBER = "unit_number"
    REFERENCE = "reference"


# Mainland plates: province character, letter, then 5 (6 for new-energy) letters/digits (no I or O); the last may
# be 挂/学/警/港/澳. Student ids and unit numbers are what schools and estates print: letters, digits, a few marks.
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
FIELD_PATTERNS: dict[PayerField, re.Pattern[str]] = {
    PayerField.PLATE_NUMBER: re.compile(rf"^[{_PROVINCES}][A-Z][A-HJ-NP-Z0-9]{{4,5}}[A-HJ-NP-Z0-9挂学警港澳]$"),
    PayerField.STUDENT_ID: re.compile(r"^[0-9A-Za-z-]{4,32}$"),
    PayerField.UNIT_NUMBER: re.compile(r"^[0-9A-Za-z#\-/ 栋幢单元楼层室号]{1,32}$"),
    PayerField.REFERENCE: re.compile(r"^[^\x00-\x1f\x7f<>]{1,64}$"),
}


@dataclass(frozen=True, slots=True)
class AmountRule:
    """A fixed amount, or bounds for the payer's."""

    fixed_minor: int | None
    min_minor: int
    max_minor: int

    def resolve(self, entered_minor: int | None) -> int:
        if self.fixed_minor is not None:
            if entered_minor is not None and entered_minor != self.fixed_minor:
                raise Problem(PAYMENT_LINK_AMOUNT_INVALID, "this link's amount is fixed")
            return self.fixed_minor
        if entered_minor is None or not self.min_minor <= entered_minor <= self.max_minor:
            raise Problem(
                PAYMENT_LINK_AMOUNT_INVALID,
                f"enter an amount of {self.min_minor}..{self.max_minor} minor units",
                min=self.min_minor,
                max=self.max_minor,
            )
        return entered_minor


def amount_rule(fixed_minor: int | None, min_minor: int | None, max_minor: int | None) -> AmountRule:
    """Validate a link's amount settings: fixed, or payer-entered with 1 ≤ min ≤ max (defaults 1 and the cap)."""
    if fixed_minor is not None:
        if min_minor is not None or max_minor is not None:
            raise Problem(PAYMENT_LINK_AMOUNT_INVALID, "a fixed amount takes no bounds")
        return AmountRule(fixed_minor, fixed_minor, fixed_minor)
    low, high = min_minor or 1, max_minor or AMOUNT_MAX_MINOR
    if not 1 <= low <= high <= AMOUNT_MAX_MINOR:
        raise Problem(PAYMENT_LINK_AMOUNT_INVALID, f"bounds must satisfy 1 <= min <= max <= {AMOUNT_MAX_MINOR}")
    return AmountRule(None, low, high)


def clean_payer_values(fields: Sequence[str], values: Mapping[str, str]) -> dict[str, str]:
    """The payer's answers to the link's fields, normalised (NFKC, trimmed, plates upper-case) and validated;
    every field is required; a value for a field the link does not ask is refused."""
    unknown = set(values) - set(fields)
    if unknown:
        raise Problem(PAYMENT_LINK_FIELD_INVALID, "this link does not ask for these fields", fields=sorted(unknown))
    cleaned: dict[str, str] = {}
    for name in fields:
        field = PayerField(name)
        value = unicodedata.normalize("NFKC", values.get(name, "")).strip()
        if field is PayerField.PLATE_NUMBER:
            value = value.replace(" ", "").replace("·", "").upper()
        if not FIELD_PATTERNS[field].fullmatch(value):
            raise Problem(PAYMENT_LINK_FIELD_INVALID, f"{name} is missing or invalid", field=name)
        cleaned[name] = value
    return cleaned


def session_order_no(link_id: str, request_id: str) -> str:
    """The merchant order number of a session opened from a link: the link and the payer's one-time request id,
    so a double-submitted form opens one session."""
    return f"{link_id}.{request_id}"
