"""The consoles' calls to the gateway: as the web process (sign-in, one-time links) or as the signed-in member
(Bearer cst_…, whose role the gateway checks on every call). The browser's address goes along as X-Forwarded-For
so the gateway's rate limits and the audit log name the person's browser, not this process.

Writes to other services carry an Idempotency-Key derived from the form's one-time request id, so a double
submit does the thing once.
"""

from __future__ import annotations

from typing import Any

import httpx

from web.clients.gateway import Gateway, GatewayProblem, GatewayUnavailable

CSV_BYTES_MAX = 20 * 1024 * 1024


CONSOLE_MODE_HEADER = "Juhe-Mode"  # the gateway's (gateway/domain/staff.py): a session's calls in one mode


class ConsoleApi:
    def __init__(self, gateway: Gateway, token: str | None, browser_ip: str, mode: str | None = None) -> None:
        self.gateway = gateway
        self.token = token
        self.auth = f"Bearer {token}" if token else ""
        self.browser_ip = browser_ip
        self.mode = mode

    def in_mode(self, mode: str) -> ConsoleApi:
        """The same member's calls in `mode` (test | live): what they create has that mode and the lists they read
        hold that mode only. A session has no key mode; without this it sees both modes, each object marked."""
        return ConsoleApi(self.gateway, self.token, self.browser_ip, mode)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        as_web: bool = False,
    ) -> Any:
        auth = f"Bearer {self.gateway.settings.gateway_client_token.get_secret_value()}" if as_web else self.auth
        mode = {CONSOLE_MODE_HEADER: self.mode} if self.mode and not as_web else None
        return await self.gateway._call(
            method,
            path,
            auth=auth,
            json=json,
            params=params,
            idempotency_key=idempotency_key,
            browser_ip=self.browser_ip,
            extra_headers=mode,
        )

    # ---- as the web process ------------------------------------------------------------------------------
    async def sign_in(self, email: str, password: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.call(
            "POST", "/v1/web/console-sessions", json={"email": email, "password": password}, as_web=True
        )
        return body

    async def second_factor(self, ticket: str, code: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.call(
            "POST", "/v1/web/console-sessions/second-factor", json={"ticket": ticket, "code": code}, as_web=True
        )
        return body

    async def inspect_link(self, token: str, purpose: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.call(
            "POST", "/v1/web/console-links/inspection", json={"token": token, "purpose": purpose}, as_web=True
        )
        return body

    async def redeem_link(self, token: str, purpose: str, **values: Any) -> dict[str, Any]:
        payload = {"token": token, "purpose": purpose, **values}
        body: dict[str, Any] = await self.call("POST", "/v1/web/console-links/redemption", json=payload, as_web=True)
        return body

    # ---- as the member ----------------------------------------------------------------------------------------
    async def me(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("GET", "/v1/console/me")
        return body

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params={k: v for k, v in params.items() if v not in (None, "")})

    async def post(self, path: str, body: dict[str, Any] | None = None, *, idempotency_key: str | None = None) -> Any:
        return await self.call("POST", path, json=body or {}, idempotency_key=idempotency_key)

    async def audit(self, action: str, target: str, before: Any = None, after: Any = None) -> None:
        """Record a write made through another service's API (the gateway's own writes record themselves)."""
        await self.call(
            "POST", "/v1/console/audit", json={"action": action, "target": target, "before": before, "after": after}
        )

    async def csv(self, path: str, params: dict[str, str]) -> bytes:
        """A CSV answer as the API gives it, byte for byte (the console's download is the API's file)."""
        headers = {"Authorization": self.auth, "X-Forwarded-For": self.browser_ip}
        try:
            response = await self.gateway.http.get(path, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(str(exc)) from exc
        if response.status_code >= 500:
            raise GatewayUnavailable(f"{response.status_code}")
        if response.status_code >= 400:
            raise GatewayProblem(response.status_code, _json_or_empty(response))
        return response.content[:CSV_BYTES_MAX]


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
