"""Merchant metadata: the one set of limits every resource with `metadata` applies (Stripe's, which merchants know).

At most 50 keys; a key is 1..40 characters; a value is a string of at most 500 characters. Metadata is stored
and echoed, never interpreted, so unbounded keys would only let one request grow a row (and every webhook and
list page carrying it) without limit. Anything else is 422 `metadata_invalid`, nothing stored: the validator
raises a pydantic error of that type, which `libs.common.web` renders with the `metadata_invalid` code.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 40
METADATA_VALUE_LENGTH_MAX = 500
METADATA_ERROR_TYPE = "metadata_invalid"


def metadata_problem(value: Any) -> str | None:
    """What is wrong with `value` as metadata, or None when it fits the limits (see the module doc)."""
    if not isinstance(value, dict):
        return "metadata must be an object of string values"
    if len(value) > METADATA_KEYS_MAX:
        return f"metadata has {len(value)} keys; at most {METADATA_KEYS_MAX}"
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= METADATA_KEY_LENGTH_MAX:
            return f"metadata key {str(key)[:50]!r} must be 1..{METADATA_KEY_LENGTH_MAX} characters"
        if not isinstance(item, str):
            return f"metadata value of {key!r} must be a string"
        if len(item) > METADATA_VALUE_LENGTH_MAX:
            return f"metadata value of {key!r} is {len(item)} characters; at most {METADATA_VALUE_LENGTH_MAX}"
    return None


def _checked(value: Any) -> Any:
    problem = metadata_problem(value)
    if problem is not None:
        raise PydanticCustomError(METADATA_ERROR_TYPE, problem)
    return value


Metadata = Annotated[
    dict[str, str],
    BeforeValidator(_checked),
    Field(
        description=f"Your key-value pairs, echoed back: at most {METADATA_KEYS_MAX} keys of 1.."
        f"{METADATA_KEY_LENGTH_MAX} characters, string values of at most {METADATA_VALUE_LENGTH_MAX} (else 422 "
        "metadata_invalid)"
    ),
]
