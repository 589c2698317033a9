"""Calls to the ledger's internal bulk endpoints (services/ledger/api/routes/imports.py) and its public reads.

Every bulk call is idempotent by construction (deterministic holder ids, transfer keys from run and source
id), so it carries an Idempotency-Key header and is retried on transport errors and 5xx; anything else
than a 200 ends the batch with 503 `ledger_unavailable`: the run stops at its last checkpoint.
"""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object, request_with_retries, service_client
from services.migration.domain.errors import LEDGER_UNAVAILABLE

BASE = "/v1/internal/migration"


class LedgerClient:
    def __init__(self, base_url: str, *, timeout_seconds: float) -> None:
        self._client = service_client(base_url, timeout_seconds=timeout_seconds)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = await request_with_retries(
                self._client, method, path, json=body, headers={"Idempotency-Key": key}
            )
        except httpx.HTTPError as exc:
            raise Problem(LEDGER_UNAVAILABLE, f"ledger {path}: {type(exc).__name__}") from None
        if response.status_code != 200:
            answer = json_object(response)
            raise Problem(LEDGER_UNAVAILABLE, f"ledger {path}: {response.status_code} {answer.get('code', '')}")
        return json_object(response)

    async def open_holders(self, key: str, holders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = await self._call("POST", f"{BASE}/holders", key, {"holders": holders})
        return list(answer["results"])

    async def post_openings(self, key: str, run_id: str, openings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = await self._call("POST", f"{BASE}/openings", key, {"run_id": run_id, "openings": openings})
        return list(answer["results"])

    async def post_control(
        self, run_id: str, currency: str, amount_minor: int, *, reverse: bool, credit: bool = False
    ) -> dict[str, Any]:
        body = {
            "run_id": run_id,
            "currency": currency,
            "amount_minor": amount_minor,
            "reverse": reverse,
            "credit": credit,
        }
        key = f"{run_id}:control:{currency}{':credit' if credit else ''}:{reverse}"
        return await self._call("POST", f"{BASE}/controls", key, body)

    async def post_reversals(self, key: str, run_id: str, source_ids: list[str]) -> list[dict[str, Any]]:
        answer = await self._call("POST", f"{BASE}/reversals", key, {"run_id": run_id, "source_ids": source_ids})
        return list(answer["results"])

    async def suspense(self, run_id: str) -> dict[str, int]:
        answer = await self._call("GET", f"{BASE}/runs/{run_id}/suspense", run_id)
        return {a["currency"]: int(a["balance_minor"]) for a in answer["accounts"]}

    async def my_wallet(self, holder_id: str) -> dict[str, Any] | None:
        """The holder as a console reads it (the sample check of the reconciliation report)."""
        try:
            response = await request_with_retries(self._client, "GET", f"/v1/wallet/holders/{holder_id}/my-wallet")
        except httpx.HTTPError:
            return None
        return json_object(response) if response.status_code == 200 else None
