"""RFC 9457 problem details with stable codes.

Each service keeps its catalogue in `domain/errors.py` as `ErrorSpec` constants; the domain raises
`Problem(SPEC, detail)`; `install_problem_handlers` renders every error, including validation errors,
unknown routes and crashes, as `application/problem+json`. The `code` is the contract clients switch
on; titles and details are for people and may change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://juhe.dev/problems/"

log = logging.getLogger("juhe.errors")


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: str
    status: int
    title: str
    retryable: bool = False


class Problem(Exception):
    """A business-rule or request error with a stable code. Raised by domain and routes alike."""

    def __init__(self, spec: ErrorSpec, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or spec.title)
        self.spec = spec
        self.detail = detail or spec.title
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(self.spec, self.detail, instance, **self.extensions)


def problem_body(spec: ErrorSpec, detail: str, instance: str | None = None, **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + spec.code,
        "title": spec.title,
        "status": spec.status,
        "detail": detail,
        "code": spec.code,
        "retryable": spec.retryable,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


VALIDATION_FAILED = ErrorSpec("validation_failed", 422, "The request is not valid")
MALFORMED_REQUEST = ErrorSpec("malformed_request", 400, "The request body could not be read")
METADATA_INVALID = ErrorSpec("metadata_invalid", 422, "The metadata is over its limits (50 keys, 40, 500 characters)")
UNKNOWN_PARAMETER = ErrorSpec("unknown_parameter", 422, "The request has a query parameter this endpoint does not take")
NOT_FOUND = ErrorSpec("not_found", 404, "No such resource")
ROUTE_NOT_FOUND = ErrorSpec("route_not_found", 404, "No such endpoint")
METHOD_NOT_ALLOWED = ErrorSpec("method_not_allowed", 405, "Method not allowed on this endpoint")
UNAUTHORIZED = ErrorSpec("unauthorized", 401, "Authentication required")
FORBIDDEN = ErrorSpec("forbidden", 403, "Not allowed")
CONFLICT = ErrorSpec("conflict", 409, "The resource changed concurrently", retryable=True)
IDEMPOTENCY_KEY_REUSED = ErrorSpec(
    "idempotency_key_reused", 409, "This idempotency key was used with a different request"
)
PAYLOAD_TOO_LARGE = ErrorSpec("payload_too_large", 413, "The request body is too large")
SERVICE_UNAVAILABLE = ErrorSpec("service_unavailable", 503, "A dependency is unavailable", retryable=True)
# Outages of the service's own infrastructure, recognised once in `libs.common.web` whatever the layer that
# noticed (SQLAlchemy, asyncpg, a socket, aiokafka): nothing was written, the same request can be sent again.
DATABASE_UNAVAILABLE = ErrorSpec("database_unavailable", 503, "The database is unavailable", retryable=True)
BROKER_UNAVAILABLE = ErrorSpec("broker_unavailable", 503, "The event broker is unavailable", retryable=True)
OUTAGE_RETRY_AFTER_SECONDS = 1
INTERNAL_ERROR = ErrorSpec("internal_error", 500, "Internal error", retryable=True)

# The internal identity the gateway mints (libs/common/internal_auth.py); kept here so domain
# catalogues can list them without importing the FastAPI dependency.
IDENTITY_MISSING = ErrorSpec("identity_missing", 401, "No gateway identity on this request")
IDENTITY_INVALID = ErrorSpec("identity_invalid", 401, "The gateway identity token is not valid")
MERCHANT_SCOPE_REQUIRED = ErrorSpec("merchant_scope_required", 403, "This endpoint needs a merchant identity")
INTERNAL_AUTH_ERRORS: tuple[ErrorSpec, ...] = (IDENTITY_MISSING, IDENTITY_INVALID, MERCHANT_SCOPE_REQUIRED)

COMMON_ERRORS: tuple[ErrorSpec, ...] = (
    VALIDATION_FAILED,
    UNKNOWN_PARAMETER,
    METADATA_INVALID,
    MALFORMED_REQUEST,
    NOT_FOUND,
    ROUTE_NOT_FOUND,
    METHOD_NOT_ALLOWED,
    UNAUTHORIZED,
    FORBIDDEN,
    CONFLICT,
    IDEMPOTENCY_KEY_REUSED,
    PAYLOAD_TOO_LARGE,
    SERVICE_UNAVAILABLE,
    DATABASE_UNAVAILABLE,
    BROKER_UNAVAILABLE,
    INTERNAL_ERROR,
)
