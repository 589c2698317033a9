"""Calls to marketing's internal import endpoints (services/marketing/api/routes/imports.py), signed with the
migration service's identity (marketing accepts no other caller there).

Both calls are idempotent by construction (marketing derives the coupon ids from run and source id; voiding
touches only coupons still available), so they are retried on transport errors and 5xx; anything else than
a 200 stops the run (or the reversal) at its last checkpoint with 503 `marketing_unavailable`.
"""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object, request_with_retries, service_client
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from services.migration.domain.errors import MARKETING_UNAVAILABLE

BASE = "/v1/internal/marketing/imports/coupons"
SERVICE = "migration"
IDENTITY_TTL_SECONDS = 300


class MarketingClient:
    def __init__(self, base_url: str, *, timeout_seconds: float, identity_secret: str) -> None:
        self._client = service_client(base_url, timeout_seconds=timeout_seconds)
        self._secret = identity_secret

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        token = mint_identity_token(self._secret, key_id=SERVICE, ttl_seconds=IDENTITY_TTL_SECONDS, service=SERVICE)
        headers = {"Idempotency-Key": key, IDENTITY_HEADER: token}
        try:
            response = await request_with_retries(self._client, "POST", path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Problem(MARKETING_UNAVAILABLE, f"marketing {path}: {type(exc).__name__}") from None
        if response.status_code != 200:
            answer = json_object(response)
            raise Problem(MARKETING_UNAVAILABLE, f"marketing {path}: {response.status_code} {answer.get('code', '')}")
        return json_object(response)

    async def import_coupons(self, key: str, run_id: str, coupons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per coupon, in order: created | duplicate | rejected (`reason`, `detail`)."""
        answer = await self._post(BASE, key, {"run_id": run_id, "coupons": coupons})
        return list(answer["results"])

    async def void_coupons(self, run_id: str, limit: int) -> dict[str, Any]:
        """Voids up to `limit` of the run's unused coupons; `remaining_count` > 0: call again."""
        return await self._post(f"{BASE}/void", f"{run_id}:void", {"run_id": run_id, "limit": limit})
