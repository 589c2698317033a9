"""The gateway service's error catalogue: stable codes, HTTP status, title, retryable."""

from __future__ import annotations

from libs.common.errors import ErrorSpec

ERRORS: tuple[ErrorSpec, ...] = ()
