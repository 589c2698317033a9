"""The explicit split of a new payment, checked by settlement against the merchant's split rule (contract A).

Settlement owns split rules (DESIGN §2), so the cashier asks `POST {settlement_url}/v1/internal/split-checks`
before it creates anything. Its answer decides: 200 → go on; a 4xx problem about the split → the same status
and `code` for the merchant; anything else (no URL configured, unreachable, timeout, 5xx, an answer that is
not about the split) → 503 `settlement_unavailable`. A split is never accepted unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from libs.common.errors import ErrorSpec, Problem
from libs.common.http import json_object, service_client
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.logging import get_logger
from services.cashier.domain.errors import SETTLEMENT_UNAVAILABLE

log = get_logger("juhe.cashier.split_checks")

TRANSFER_NUDGE_PATH = "/v1/internal/transfers/{out_transfer_no}/nudge"
SPLIT_CHECKS_PATH = "/v1/internal/split-checks"
IDENTITY_KEY_ID = "cashier"
# 4xx answers that say something about our call, not about the merchant's split: a settlement without the
# endpoint, or refusing our identity. The merchant can do nothing about these, so they are 503.
NOT_RELAYED_CODES = frozenset({"route_not_found", "method_not_allowed", "identity_missing", "identity_invalid",
                               "merchant_scope_required", "forbidden", "unauthorized", "malformed_request"})
DETAIL_LENGTH_MAX = 500


class SettlementClient:
    def __init__(self, base_url: str, *, timeout_seconds: float, identity_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._identity_secret = identity_secret
        self._http: httpx.AsyncClient | None = (
            service_client(self.base_url, timeout_seconds=timeout_seconds) if self.base_url else None
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def check_split(
        self, *, merchant_id: str, amount_minor: int, currency: str, split: Sequence[tuple[str, int]],
        business_line: str = "",
    ) -> None:
        """Return when settlement accepts the split; raise the merchant-facing Problem otherwise.

        `business_line` is the payment's `metadata.business_line`: settlement picks the rule by it at
        success, so the check must be made against the same rule."""
        if self._http is None:
            raise Problem(SETTLEMENT_UNAVAILABLE, "no settlement service is configured to check the split")
        body = {"merchant_id": merchant_id, "amount_minor": amount_minor, "currency": currency,
                "split": [{"receiver_id": receiver, "amount_minor": amount} for receiver, amount in split]}
        if business_line:
            body["business_line"] = business_line
        try:
            # A service identity, so settlement can tell the cashier from a merchant even on /v1/internal.
            token = mint_identity_token(self._identity_secret, key_id=IDENTITY_KEY_ID, service="cashier")
            response = await self._http.post(SPLIT_CHECKS_PATH, json=body, headers={IDENTITY_HEADER: token})
        except httpx.HTTPError as exc:
            log.warning("settlement unreachable for a split check", error=repr(exc))
            raise Problem(SETTLEMENT_UNAVAILABLE, "settlement could not be reached to check the split") from exc
        if response.status_code == 200:
            return
        problem = json_object(response)
        code = problem.get("code")
        if 400 <= response.status_code < 500 and isinstance(code, str) and code and code not in NOT_RELAYED_CODES:
            title = str(problem.get("title") or "The split was refused by settlement")
            detail = str(problem.get("detail") or title)[:DETAIL_LENGTH_MAX]
            raise Problem(ErrorSpec(code, response.status_code, title), detail)
        log.warning("settlement answered a split check with an error", status=response.status_code, code=code)
        raise Problem(SETTLEMENT_UNAVAILABLE, f"settlement answered the split check with HTTP {response.status_code}")

    async def nudge_transfer(self, out_transfer_no: str) -> None:
        """A channel called back about a transfer: ask settlement to query it now. Best effort: settlement's own
        poll finds the same answer if this is lost, so a failure is only logged."""
        if self._http is None:
            return
        try:
            token = mint_identity_token(self._identity_secret, key_id=IDENTITY_KEY_ID, service="cashier")
            response = await self._http.post(TRANSFER_NUDGE_PATH.format(out_transfer_no=out_transfer_no),
                                             headers={IDENTITY_HEADER: token})
        except httpx.HTTPError as exc:
            log.warning("settlement unreachable for a transfer nudge", error=repr(exc))
            return
        if response.status_code >= 300:
            log.warning("settlement refused a transfer nudge", status=response.status_code)
