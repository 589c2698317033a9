"""Money is an integer number of minor units plus an ISO 4217 currency code. Never a float.

`AmountMinor` is the pydantic type every API uses for amounts: a strict integer (JSON `1.5` or `"10"`
is refused, not coerced), positive, and small enough for PostgreSQL `bigint`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt

MAX_AMOUNT_MINOR = 2**63 - 1

# ISO 4217 active codes with their minor-unit exponent. Kept here (not a library) because the set
# is small, stable, and we need the exponent for the edge conversions connectors do.
CURRENCY_EXPONENTS: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "MOP": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "KRW": 0,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "NZD": 2,
    "THB": 2,
    "MYR": 2,
    "IDR": 2,
    "PHP": 2,
    "VND": 0,
    "INR": 2,
    "RUB": 2,
    "AED": 2,
    "SAR": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "HUF": 2,
    "BRL": 2,
    "MXN": 2,
    "ZAR": 2,
    "TRY": 2,
    "ILS": 2,
    "KWD": 3,
    "BHD": 3,
}


def is_currency(code: str) -> bool:
    return code in CURRENCY_EXPONENTS


def _check_currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"unknown or unsupported ISO 4217 currency {code!r}")
    return code


AmountMinor = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT_MINOR, description="Amount in minor units (fen)")]
AmountMinorOrZero = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_MINOR)]
Currency = Annotated[
    str,
    Field(min_length=3, max_length=3, description="ISO 4217 currency code", examples=["CNY"]),
    AfterValidator(_check_currency),
]
