"""Merchant metadata: the one set of limits every resource with `metadata` applies (Stripe's, which merchants know).

At most 50 keys; a key is 1..40 characters; a value is a string of at most 500 characters. Metadata is stored
and echoed, never interpreted, so unbounded keys would only let one request grow a row (and every webhook and
list page carrying it) without limit. Anything else is 422 `metadata_invalid`, nothing stored: the validator
raises a pydantic error of that type, which `libs.common.web` renders with the `metadata_invalid` code.

A resource whose metadata later becomes a payment's, with keys of its own added (a checkout session adds 2, a
payment link its payer fields too), takes fewer keys, so the payment's 50 still hold:
`Annotated[Metadata, keys_at_most(n)]` (the same checks and code, with `n` keys).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 40
METADATA_VALUE_LENGTH_MAX = 500
METADATA_ERROR_TYPE = "metadata_invalid"


def metadata_problem(value: Any, *, keys_max: int = METADATA_KEYS_MAX) -> str | None:
    """What is wrong with `value` as metadata, or None when it fits the limits (see the module doc)."""
    if not isinstance(value, dict):
        return "metadata must be an object of string values"
    if len(value) > keys_max:
        return f"metadata has {len(value)} keys; at most {keys_max}"
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= METADATA_KEY_LENGTH_MAX:
            return f"metadata key {str(key)[:50]!r} must be 1..{METADATA_KEY_LENGTH_MAX} characters"
        if not isinstance(item, str):
            return f"metadata value of {key!r} must be a string"
        if len(item) > METADATA_VALUE_LENGTH_MAX:
            return f"metadata value of {key!r} is {len(item)} characters; at most {METADATA_VALUE_LENGTH_MAX}"
    return None


def _checked(value: Any, keys_max: int = METADATA_KEYS_MAX) -> Any:
    problem = metadata_problem(value, keys_max=keys_max)
    if problem is not None:
        raise PydanticCustomError(METADATA_ERROR_TYPE, problem)
    return value


def metadata_description(keys_max: int = METADATA_KEYS_MAX) -> str:
    return (
        f"Your key-value pairs, echoed back: at most {keys_max} keys of 1..{METADATA_KEY_LENGTH_MAX} characters, "
        f"string values of at most {METADATA_VALUE_LENGTH_MAX} (else 422 metadata_invalid)"
    )


Metadata = Annotated[dict[str, str], BeforeValidator(_checked), Field(description=metadata_description())]


def keys_at_most(keys_max: int) -> BeforeValidator:
    """`Annotated[Metadata, keys_at_most(n)]`: `Metadata` with at most `n` keys (see the module doc); describe the
    field with `metadata_description(n)`."""
    return BeforeValidator(partial(_checked, keys_max=keys_max))
