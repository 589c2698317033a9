"""The bank, as settlement sees it (sandboxes/bank protocol: signed JSON, HMAC-SHA256 with a timestamp).

The signature code is written here again rather than imported: the sandbox stands for the outside world
and shares nothing with Juhe. Answers and callbacks are verified; an unverifiable answer is treated as
no answer (the payout stays pending and is asked again).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Bank-Signature"
CLIENT_HEADER = "X-Bank-Client-Id"
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})


class BankUnavailable(Exception):
    """No usable answer: connection error, timeout, 5xx, or a reply whose signature does not verify."""


class BankRefused(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code


def sign(secret: str, payload: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + payload, hashlib.sha256).hexdigest()}"


def verify(secret: str, payload: bytes, header: str | None, *, skew_seconds_max: int) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in (header or "").split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(int(time.time()) - t) > skew_seconds_max:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class BankClient:
    http: httpx.AsyncClient
    client_id: str
    secret: str
    skew_seconds_max: int

    @classmethod
    def build(
        cls, base_url: str, client_id: str, secret: str, *, timeout_seconds: float, skew_seconds_max: int
    ) -> BankClient:
        return cls(httpx.AsyncClient(base_url=base_url, timeout=timeout_seconds), client_id, secret, skew_seconds_max)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _headers(self, payload: bytes) -> dict[str, str]:
        return {
            CLIENT_HEADER: self.client_id,
            SIGNATURE_HEADER: sign(self.secret, payload),
            "Content-Type": "application/json",
        }

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 500:
            raise BankUnavailable(f"bank answered {response.status_code}")
        if response.status_code >= 400:
            body = response.json() if response.content else {}
            raise BankRefused(response.status_code, str(body.get("code", "")), str(body.get("message", "")))
        if not verify(
            self.secret,
            response.content,
            response.headers.get(SIGNATURE_HEADER),
            skew_seconds_max=self.skew_seconds_max,
        ):
            raise BankUnavailable("bank answer signature does not verify")
        answer: dict[str, Any] = json.loads(response.content)
        return answer

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Idempotent by payout_no at the bank: safe to repeat after a lost answer."""
        raw = json.dumps(body, separators=(",", ":")).encode()
        try:
            response = await self.http.post("/v1/payouts", content=raw, headers=self._headers(raw))
        except httpx.HTTPError as exc:
            raise BankUnavailable(repr(exc)) from exc
        return self._answer(response)

    async def query(self, payout_no: str) -> dict[str, Any]:
        path = f"/v1/payouts/{payout_no}"
        try:
            response = await self.http.get(path, headers=self._headers(path.encode()))
        except httpx.HTTPError as exc:
            raise BankUnavailable(repr(exc)) from exc
        return self._answer(response)

    def verify_callback(self, body: bytes, header: str | None) -> bool:
        return verify(self.secret, body, header, skew_seconds_max=self.skew_seconds_max)
