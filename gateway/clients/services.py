"""The gateway's flows calling Juhe's services as the platform (onboarding: cashier, routing, settlement,
ledger), over the same pooled httpx clients the gateway forwards reads with (`proxy.Upstreams.clients`).

The identity is a platform token minted here (`X-Juhe-Identity`, key id `gateway-onboarding`), exactly what a
platform operator's proxied call carries, so the services apply the same checks. Retries: `request_with_retries`
retries reads, and writes that carry an Idempotency-Key (all of ours do: the services' PUTs are idempotent by
nature and the POSTs send one). A transport error or a 5xx after the retries is `ServiceUnavailable`, which a
flow treats as "try the step again later", never as a refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from libs.common.http import json_object, request_with_retries
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token

IDENTITY_KEY_ID = "gateway-onboarding"
TOKEN_TTL_SECONDS = 60


class ServiceUnavailable(Exception):
    """The service did not give a final answer (down, 5xx, timeout): the call may be tried again."""


class PlatformCalls:
    def __init__(self, clients: Mapping[str, httpx.AsyncClient], *, internal_token_secret: str) -> None:
        self._clients = clients
        self._secret = internal_token_secret

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        platform_id: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON object) of a final answer (2xx–4xx); raises `ServiceUnavailable` otherwise."""
        token = mint_identity_token(
            self._secret, key_id=IDENTITY_KEY_ID, platform=platform_id, ttl_seconds=TOKEN_TTL_SECONDS
        )
        headers = {IDENTITY_HEADER: token}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await request_with_retries(self._clients[service], method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"{service} {method} {path}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(f"{service} {method} {path}: HTTP {response.status_code}")
        return response.status_code, json_object(response)
