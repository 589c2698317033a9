"""Clients of other Juhe services the cashier calls synchronously before it creates a payment (settlement's
split check, marketing's coupon lock): one shape for both, so they answer the merchant the same way. Each is a
`JsonServiceClient` (libs/common/http.py): the lean call without httpx's client layer, whose failures are httpx's
exceptions, so every `except httpx.HTTPError` below still answers a retryable 503 (ADR 0003)."""

from __future__ import annotations

from libs.common.errors import ErrorSpec, Problem
from libs.common.http import JsonServiceClient, LeanResponse, json_object
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token

IDENTITY_KEY_ID = "cashier"
# 4xx answers that say something about our call, not about the merchant's request: a service without the
# endpoint, or refusing our identity. The merchant can do nothing about these, so they are 503.
NOT_RELAYED_CODES = frozenset(
    {
        "route_not_found",
        "method_not_allowed",
        "identity_missing",
        "identity_invalid",
        "merchant_scope_required",
        "forbidden",
        "unauthorized",
        "malformed_request",
    }
)
DETAIL_LENGTH_MAX = 500


class InternalClient:
    """An HTTP client of one Juhe service (`base_url`; empty = not configured) calling with the cashier's
    service identity, so the callee can tell the cashier from a merchant even on `/v1/internal`."""

    def __init__(self, base_url: str, *, timeout_seconds: float, identity_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._identity_secret = identity_secret
        self._http: JsonServiceClient | None = (
            JsonServiceClient(self.base_url, timeout_seconds=timeout_seconds) if self.base_url else None
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def identity_headers(self) -> dict[str, str]:
        return {IDENTITY_HEADER: mint_identity_token(self._identity_secret, key_id=IDENTITY_KEY_ID, service="cashier")}


def relayed_refusal(response: LeanResponse, fallback_title: str, **extensions: object) -> Problem | None:
    """The callee's 4xx problem about the merchant's request, as the same status and `code` for the merchant;
    None when the answer is anything else (the caller then answers its own 503)."""
    problem = json_object(response)
    code = problem.get("code")
    if not (400 <= response.status_code < 500 and isinstance(code, str) and code and code not in NOT_RELAYED_CODES):
        return None
    title = str(problem.get("title") or fallback_title)
    detail = str(problem.get("detail") or title)[:DETAIL_LENGTH_MAX]
    return Problem(ErrorSpec(code, response.status_code, title), detail, **extensions)
