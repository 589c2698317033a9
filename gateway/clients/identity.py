"""The identity provider (the identity sandbox in development: `sandboxes/identity`), for merchant KYC.

Protocol (Juhe's own, labelled as such in the sandbox): JSON signed with HMAC-SHA256 over
"<unix timestamp>.<raw body>" in `X-Identity-Timestamp` / `X-Identity-Signature` (hex), both ways of the
request. `POST /v1/merchant-checks` answers the verdict at once (`approved`, `rejected` with reasons, or
`held` for a manual review, then read again with `GET /v1/merchant-checks/{check_id}`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from gateway.clients.services import ServiceUnavailable
from libs.common.http import json_object, request_with_retries, service_client

TIMESTAMP_HEADER = "X-Identity-Timestamp"
SIGNATURE_HEADER = "X-Identity-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class IdentityProvider:
    def __init__(self, base_url: str, *, secret: str, timeout_seconds: float) -> None:
        self._secret = secret
        self._client = service_client(base_url.rstrip("/"), timeout_seconds=timeout_seconds)

    async def close(self) -> None:
        await self._client.aclose()

    def _headers(self, body: bytes) -> dict[str, str]:
        now = int(time.time())
        return {
            "content-type": "application/json",
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(self._secret, now, body),
        }

    async def _send(self, method: str, path: str, body: bytes, *, check_id: str) -> dict[str, Any]:
        # The provider decides once per check_id, so sending a check again is safe: the check id is the
        # Idempotency-Key that lets `request_with_retries` retry the POST too.
        headers = {**self._headers(body), "Idempotency-Key": check_id}
        try:
            response = await request_with_retries(self._client, method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"identity provider {path}: {type(exc).__name__}") from exc
        answer = json_object(response)
        if response.status_code >= 400 or "result" not in answer:
            raise ServiceUnavailable(f"identity provider {path}: HTTP {response.status_code}")
        return answer

    async def check_merchant(self, check: dict[str, Any]) -> dict[str, Any]:
        """`{check_id, result: approved|rejected|held, reasons: [{code, field, detail}]}`."""
        return await self._send("POST", "/v1/merchant-checks", json.dumps(check).encode(), check_id=check["check_id"])

    async def read_check(self, check_id: str) -> dict[str, Any]:
        return await self._send("GET", f"/v1/merchant-checks/{check_id}", b"", check_id=check_id)

    async def decide_held_check(self, check_id: str, *, approve: bool, reason: str | None) -> bool:
        """A reviewer's decision on a check the provider holds for a manual review (docs/protocols/identity.md §5,
        `POST /control/merchant-checks/{id}/approve|reject {"reason"?}`): True when this call decided it, False
        when it was decided already (409: by an earlier try of this call, or at the provider). The verdict itself is
        read by sending the check again, as the onboarding's KYC step always does."""
        body = json.dumps({"reason": reason} if reason else {}).encode()
        path = f"/control/merchant-checks/{check_id}/{'approve' if approve else 'reject'}"
        headers = {**self._headers(body), "Idempotency-Key": f"{check_id}.decision"}
        try:
            response = await request_with_retries(self._client, "POST", path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"identity provider {path}: {type(exc).__name__}") from exc
        if response.status_code == 409:
            return False
        if response.status_code >= 400:
            raise ServiceUnavailable(f"identity provider {path}: HTTP {response.status_code}")
        return True
