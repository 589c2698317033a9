"""The cashier's channel coupon API (`/v1/internal/channel-coupons`): marketing's only way to a channel.

Why through the cashier: it is the one place holding channel credentials and signing code (docs/marketing.md
"Channel coupons"). Every call is idempotent at the channel (marketing sends its own `out_request_no`), so a call
whose answer was lost is simply made again. Answers: the channel's refusal (the cashier's 4xx) → 422
`channel_refused` naming the channel's (or the cashier's) code; anything that says nothing (no cashier configured,
unreachable, timeout, 5xx, an unreadable answer) → 503 `channel_unavailable`, retryable.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object, service_client
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.logging import get_logger
from services.marketing.domain.errors import CHANNEL_REFUSED, CHANNEL_UNAVAILABLE

log = get_logger("juhe.marketing.cashier")

BASE = "/v1/internal/channel-coupons"
IDENTITY_KEY_ID = "marketing"
# 4xx answers about our call itself (a cashier without the endpoint, refusing our identity): an outage to us.
ABOUT_OUR_CALL = frozenset(
    {"route_not_found", "method_not_allowed", "identity_missing", "identity_invalid", "forbidden"}
)


class CashierClient:
    def __init__(self, base_url: str, *, timeout_seconds: float, identity_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = identity_secret
        self._http = service_client(self.base_url, timeout_seconds=timeout_seconds) if self.base_url else None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if self._http is None:
            raise Problem(
                CHANNEL_UNAVAILABLE, "no cashier is configured to reach the channel (JUHE_MARKETING_CASHIER_URL)"
            )
        headers = {IDENTITY_HEADER: mint_identity_token(self._secret, key_id=IDENTITY_KEY_ID, service="marketing")}
        try:
            response = await self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("cashier unreachable for a channel coupon call", path=path, error=repr(exc))
            raise Problem(CHANNEL_UNAVAILABLE, "the cashier could not be reached") from exc
        answer = json_object(response)
        if response.status_code == 200 and answer:
            return answer
        code = answer.get("code")
        if 400 <= response.status_code < 500 and isinstance(code, str) and code not in ABOUT_OUR_CALL:
            # The channel's refusal (402 channel_refused, with its code) or the cashier's about this request (no
            # channel configured for a merchant, a field the channel cannot take): asking again will not help.
            raise Problem(
                CHANNEL_REFUSED,
                str(answer.get("detail") or answer.get("title") or "the channel refused")[:500],
                channel_code=answer.get("channel_code") or code,
            )
        log.warning(
            "cashier answered a channel coupon call with an error",
            status=response.status_code,
            code=answer.get("code"),
            path=path,
        )
        raise Problem(CHANNEL_UNAVAILABLE, f"the cashier answered HTTP {response.status_code} ({answer.get('code')})")

    async def create_stock(self, request: dict[str, Any]) -> str:
        """The channel's stock id for this (fixed) request."""
        return str((await self._call("POST", f"{BASE}/stocks", body=request))["channel_stock_id"])

    async def stock_action(
        self, program: str, channel_stock_id: str, action: str, *, merchant_id: str, out_request_no: str
    ) -> bool:
        """start | pause | restart | stop; False when the channel has no such step (Alipay's pause)."""
        path = f"{BASE}/stocks/{program}/{quote(channel_stock_id, safe='')}/{action}"
        answer = await self._call("POST", path, body={"merchant_id": merchant_id, "out_request_no": out_request_no})
        return bool(answer.get("applied", True))

    async def query_stock(self, program: str, channel_stock_id: str, *, merchant_id: str) -> dict[str, Any]:
        path = f"{BASE}/stocks/{program}/{quote(channel_stock_id, safe='')}"
        return await self._call("GET", path, params={"merchant_id": merchant_id})

    async def send_coupon(
        self, *, program: str, merchant_id: str, channel_stock_id: str, user: str, out_request_no: str
    ) -> str:
        body = {
            "program": program,
            "merchant_id": merchant_id,
            "channel_stock_id": channel_stock_id,
            "user": user,
            "out_request_no": out_request_no,
        }
        return str((await self._call("POST", f"{BASE}/coupons", body=body))["channel_coupon_id"])

    async def query_coupon(
        self, program: str, channel_coupon_id: str, *, merchant_id: str, user: str
    ) -> dict[str, Any]:
        path = f"{BASE}/coupons/{program}/{quote(channel_coupon_id, safe='')}"
        return await self._call("GET", path, params={"merchant_id": merchant_id, "user": user})
