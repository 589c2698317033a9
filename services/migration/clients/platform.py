"""Calls to the platform's public admin API through the gateway, as the platform operator: a migrated
merchant's gateway identity and API key (`/v1/platform/merchants`) and its routing contracts
(`/v1/contracts`). Through the gateway, not to the services directly, so the same checks apply as when an
operator does it by hand (platform-only prefixes, identity, audit).

The admin key is a secret of the platform (JUHE_MIGRATION_PLATFORM_KEY): sent, never logged or stored.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object, request_with_retries, service_client
from services.migration.domain.errors import GATEWAY_UNAVAILABLE


class PlatformClient:
    def __init__(self, gateway_url: str, admin_key: str, *, timeout_seconds: float) -> None:
        self._client = service_client(
            gateway_url, timeout_seconds=timeout_seconds, headers={"Authorization": f"Bearer {admin_key}"}
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body); a transport error or a 5xx after the retries is 503 `gateway_unavailable`."""
        headers = {"Idempotency-Key": str(uuid.uuid4())} if method != "GET" else {}
        try:
            response = await request_with_retries(self._client, method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Problem(GATEWAY_UNAVAILABLE, f"gateway {path}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise Problem(GATEWAY_UNAVAILABLE, f"gateway {path}: {response.status_code}")
        return response.status_code, json_object(response)

    async def create_merchant(self, merchant_id: str, name: str, *, key_mode: str) -> tuple[int, dict[str, Any]]:
        body = {"merchant_id": merchant_id, "name": name, "key_mode": key_mode}
        return await self._call("POST", "/v1/platform/merchants", body)

    async def create_merchant_key(self, merchant_id: str, *, mode: str) -> tuple[int, dict[str, Any]]:
        return await self._call("POST", f"/v1/platform/merchants/{merchant_id}/keys", {"mode": mode})

    async def put_contract(self, merchant_id: str, route_id: str, sub_merchant_id: str) -> tuple[int, dict[str, Any]]:
        """Creates the contract only (expected_version 0): one the platform already set is never overwritten."""
        body = {"sub_merchant_id": sub_merchant_id, "expected_version": 0}
        return await self._call("PUT", f"/v1/contracts/{merchant_id}/{route_id}", body)

    async def contract(self, merchant_id: str, route_id: str) -> tuple[int, dict[str, Any]]:
        return await self._call("GET", f"/v1/contracts/{merchant_id}/{route_id}")
