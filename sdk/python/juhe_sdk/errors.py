"""Typed errors: one class per family of problem+json `code`, so callers catch what they can handle."""

from __future__ import annotations

from typing import Any


class JuheError(Exception):
    """Base of every error this SDK raises."""


class APIConnectionError(JuheError):
    """The request did not get an HTTP answer (connection refused, timeout) after all retries."""


class WebhookSignatureError(JuheError):
    """A webhook's `Juhe-Signature` is missing, malformed, stale or does not match."""


class APIError(JuheError):
    """An RFC 9457 problem answered by Juhe. `code` is stable; `detail` is for people."""

    def __init__(self, status: int, problem: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.problem = problem
        self.code: str = str(problem.get("code") or f"http_{status}")
        self.title: str = str(problem.get("title") or "")
        self.detail: str = str(problem.get("detail") or self.title)
        self.retryable: bool = bool(problem.get("retryable", False))
        self.headers = headers or {}
        self.trace_id = self.headers.get("x-trace-id")
        super().__init__(f"{status} {self.code}: {self.detail}")


class InvalidRequestError(APIError):
    """400 / 422: fix the request (validation_failed, idempotency_key_missing, …)."""


class AuthenticationError(APIError):
    """401: signature_invalid, timestamp_out_of_window, nonce_reused, api_key_revoked, …"""


class PermissionDeniedError(APIError):
    """403: this identity may not do that."""


class NotFoundError(APIError):
    """404: no such resource for this merchant (another merchant's ids look exactly like missing ones)."""


class ConflictError(APIError):
    """409: a business conflict, or the resource changed concurrently."""


class IdempotencyError(ConflictError):
    """409 idempotency_key_reused (a bug: same key, other request) or idempotency_key_in_progress."""


class RateLimitError(APIError):
    """429: slow down; `retry_after_seconds` says how long."""

    @property
    def retry_after_seconds(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ServerError(APIError):
    """5xx: Juhe or a service behind it failed; retried automatically when safe."""


def error_for(status: int, problem: dict[str, Any], headers: dict[str, str]) -> APIError:
    code = str(problem.get("code", ""))
    cls: type[APIError]
    if code.startswith("idempotency_key") and status == 409:
        cls = IdempotencyError
    elif status in (400, 413, 422):
        cls = InvalidRequestError
    elif status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(status, problem, headers)
