"""The web process's only way to the platform: the gateway's public API, like any client.

Two identities: the web process itself (`gateway_client_token`, first-party, accepted only by
`POST /v1/web/wallet-sessions`) and the signed-in user (the user token the sign-in link was exchanged for,
which the gateway scopes to that user's own wallet). Writes carry an `Idempotency-Key` derived from the
form's one-time request id, so a double-submitted form does the thing once.
"""

from __future__ import annotations

from typing import Any

import httpx

from web.config import Settings


class GatewayProblem(Exception):
    """A problem+json answer: `code` is the platform's stable error code."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}")
        self.status = status
        self.code = str(body.get("code") or f"http_{status}")
        self.body = body


class GatewayUnavailable(Exception):
    """The gateway could not be reached or timed out: the page says to try again."""


class Gateway:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(
            base_url=settings.gateway_url, timeout=settings.gateway_timeout_seconds, transport=transport
        )
        self._client_auth = f"Bearer {settings.gateway_client_token.get_secret_value()}"

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        auth: str,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        browser_ip: str | None = None,
        accept_language: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Authorization": auth} if auth else {}
        if extra_headers:
            headers.update(extra_headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if browser_ip:
            headers["X-Forwarded-For"] = browser_ip
        if accept_language:
            headers["Accept-Language"] = accept_language
        try:
            response = await self.http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(str(exc)) from exc
        if response.status_code >= 500:
            raise GatewayUnavailable(f"{response.status_code} {response.text[:200]}")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise GatewayProblem(response.status_code, body if isinstance(body, dict) else {})
        return response.json() if response.content else None

    @staticmethod
    def user(token: str) -> str:
        return f"Bearer {token}"

    # ---- session ------------------------------------------------------------------------------------
    async def redeem_sign_in_link(self, link_token: str, *, browser_ip: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "POST", "/v1/web/wallet-sessions", auth=self._client_auth, json={"token": link_token}, browser_ip=browser_ip
        )
        return body

    async def sign_out(self, token: str) -> None:
        await self._call("POST", "/v1/me/sign-out", auth=self.user(token))

    async def gateway_alive(self) -> bool:
        try:
            return (await self.http.get("/livez")).status_code == 200
        except httpx.HTTPError:
            return False

    # ---- wallet (ledger, through the gateway) -------------------------------------------------------
    async def my_wallet(self, token: str, holder_id: str, *, recent_limit: int = 10) -> dict[str, Any]:
        path = f"/v1/wallet/holders/{holder_id}/my-wallet"
        body: dict[str, Any] = await self._call(
            "GET", path, auth=self.user(token), params={"recent_limit": recent_limit}
        )
        return body

    async def history(
        self, token: str, holder_id: str, account_id: str, *, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        path = f"/v1/wallet/holders/{holder_id}/subaccounts/{account_id}/history"
        body: dict[str, Any] = await self._call("GET", path, auth=self.user(token), params=params)
        return body

    async def withdraw(self, token: str, holder_id: str, *, request_id: str, amount_minor: int, fee_minor: int) -> Any:
        body = {"withdrawal_id": f"wd_{request_id}", "amount_minor": amount_minor, "fee_minor": fee_minor}
        return await self._call(
            "POST",
            f"/v1/wallet/holders/{holder_id}/withdrawals",
            auth=self.user(token),
            json=body,
            idempotency_key=f"web-wd-{request_id}",
        )

    async def repay(self, token: str, bill_id: str, *, request_id: str, amount_minor: int) -> Any:
        body = {"repayment_id": f"rp_{request_id}", "amount_minor": amount_minor}
        return await self._call(
            "POST",
            f"/v1/wallet/bills/{bill_id}/repayments",
            auth=self.user(token),
            json=body,
            idempotency_key=f"web-rp-{request_id}",
        )

    async def exchange_points(self, token: str, holder_id: str, *, request_id: str, points: int) -> Any:
        body = {"exchange_id": f"px_{request_id}", "points": points}
        return await self._call(
            "POST",
            f"/v1/wallet/holders/{holder_id}/points/exchanges",
            auth=self.user(token),
            json=body,
            idempotency_key=f"web-px-{request_id}",
        )

    async def top_up_order(
        self, token: str, holder_id: str, *, request_id: str, amount_minor: int, client_ip: str
    ) -> dict[str, Any]:
        """A top-up order paid on the channel's H5 page (ledger → cashier); the checkout will take this over."""
        body = {
            "amount_minor": amount_minor,
            "scene": "h5",
            "payer": {"client_ip": client_ip},
            "idempotency_key": f"web-tu-{request_id}",
        }
        order: dict[str, Any] = await self._call(
            "POST",
            f"/v1/wallet/holders/{holder_id}/top-up-orders",
            auth=self.user(token),
            json=body,
            idempotency_key=f"web-tu-{request_id}",
        )
        return order

    # ---- payment PIN (gateway) ----------------------------------------------------------------------
    async def pin_status(self, token: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call("GET", "/v1/me/payment-pin", auth=self.user(token))
        return body

    async def set_pin(self, token: str, *, pin: str, current_pin: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"pin": pin}
        if current_pin is not None:
            payload["current_pin"] = current_pin
        body: dict[str, Any] = await self._call("PUT", "/v1/me/payment-pin", auth=self.user(token), json=payload)
        return body

    async def verify_pin(self, token: str, pin: str) -> None:
        await self._call("POST", "/v1/me/payment-pin/verifications", auth=self.user(token), json={"pin": pin})

    # ---- hosted checkout (cashier, through the gateway) ----------------------------------------------
    # The gateway forwards `/v1/checkout/pages` with no identity: the 256-bit page token in the path is the
    # credential. The web process still presents its first-party token and names the payer's browser, so the
    # gateway rate-limits each browser on its own rather than every open page together (they all come from
    # this process's address). Paying from the wallet is the signed-in user's call.
    async def checkout_page(self, token: str, *, browser_ip: str, scene: str | None = None) -> dict[str, Any]:
        params = {"scene": scene} if scene else None
        body: dict[str, Any] = await self._call(
            "GET", f"/v1/checkout/pages/{token}", auth=self._client_auth, params=params, browser_ip=browser_ip
        )
        return body

    async def start_checkout_payment(
        self,
        token: str,
        *,
        method: str,
        scene: str,
        request_id: str,
        client_ip: str,
        oauth: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """`oauth` (code, state): the app's authorisation came back; the cashier redeems the code (JSAPI)."""
        payer: dict[str, str] = {"client_ip": client_ip}
        if oauth is not None:
            payer.update(oauth_code=oauth[0], oauth_state=oauth[1])
        payload = {"method": method, "scene": scene, "request_id": request_id, "payer": payer}
        body: dict[str, Any] = await self._call(
            "POST", f"/v1/checkout/pages/{token}/payments", auth=self._client_auth, json=payload, browser_ip=client_ip
        )
        return body

    async def link_page(self, slug: str, *, browser_ip: str) -> dict[str, Any]:
        """A payment link's public view (`/pay/{slug}`), under the same passthrough prefix as the checkout page."""
        body: dict[str, Any] = await self._call(
            "GET", f"/v1/checkout/pages/links/{slug}", auth=self._client_auth, browser_ip=browser_ip
        )
        return body

    async def open_link_session(
        self, slug: str, *, amount_minor: int | None, payer_fields: dict[str, str], request_id: str, browser_ip: str
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"request_id": request_id, "payer_fields": payer_fields}
        if amount_minor is not None:
            payload["amount_minor"] = amount_minor
        body: dict[str, Any] = await self._call(
            "POST",
            f"/v1/checkout/pages/links/{slug}/sessions",
            auth=self._client_auth,
            json=payload,
            browser_ip=browser_ip,
        )
        return body

    async def applicable_coupons(
        self, user_token: str, *, merchant_id: str, amount_minor: int, currency: str
    ) -> list[dict[str, Any]]:
        """The signed-in user's coupons for this merchant and amount, best first (the gateway names the user)."""
        params = {"merchant_id": merchant_id, "order_amount_minor": amount_minor, "currency": currency}
        body: dict[str, Any] = await self._call(
            "GET", "/v1/me/applicable-coupons", auth=self.user(user_token), params=params
        )
        return list(body.get("data") or [])

    async def pay_checkout_as_user(
        self,
        user_token: str,
        token: str,
        *,
        method: str,
        scene: str,
        request_id: str,
        coupon_id: str,
        client_ip: str,
    ) -> dict[str, Any]:
        """The signed-in payer pays the page by a channel with one of their coupons (the cashier locks it)."""
        payload = {
            "method": method,
            "scene": scene,
            "request_id": request_id,
            "coupon_id": coupon_id,
            "client_ip": client_ip,
        }
        body: dict[str, Any] = await self._call(
            "POST",
            f"/v1/checkout/user-payments/{token}",
            auth=self.user(user_token),
            json=payload,
            idempotency_key=f"web-ck-{request_id}",
            browser_ip=client_ip,
        )
        return body

    async def pay_checkout_with_wallet(self, user_token: str, token: str, *, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._call(
            "POST",
            f"/v1/checkout/wallet-payments/{token}",
            auth=self.user(user_token),
            json={"request_id": request_id},
            idempotency_key=f"web-ck-{request_id}",
        )
        return body
