"""The routing service's client: a payment's ordered candidate routes per payment method.

`POST {JUHE_CASHIER_ROUTING_URL}/v1/route/methods` asks all of a payment's methods in one call (one decision per
method on one snapshot of routing's state), each answered as `POST /v1/route` would answer it alone (a routing
without the batch endpoint, 404, is asked once per method). A 422 `no_route_available` or 503
`channel_unavailable` is a policy answer (no candidate for that method: []); no URL, unreachable, any other error
→ None, and the caller (flows/routing.py) falls back to the merchant's own channel order.

One such call per create, so it is made with the lean `JsonServiceClient` (libs/common/http.py, ADR 0003 "When to
use which"), whose failures are httpx's exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from libs.common.http import JsonServiceClient, json_object
from libs.common.logging import get_logger

log = get_logger("juhe.cashier.routing")

POLICY_ANSWERS = frozenset({"no_route_available", "channel_unavailable"})


@dataclass(frozen=True, slots=True)
class Candidate:
    channel: str  # the connector name
    route_id: str | None = None
    fee_minor: int | None = None
    fee_rate_bps: int | None = None
    source: str = "fallback"  # "routing" or "fallback"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_candidates(payload: Any) -> list[Candidate]:
    """Tolerant reading of routing's answer: `candidates[]` with `connector` (or `channel`), `route_id`, `fee`."""
    items = payload.get("candidates") if isinstance(payload, dict) else None
    result: list[Candidate] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        channel = item.get("connector") or item.get("channel")
        if not isinstance(channel, str):
            continue
        raw_fee = item.get("fee")
        fee: dict[str, Any] = raw_fee if isinstance(raw_fee, dict) else {}
        result.append(
            Candidate(
                channel=channel,
                route_id=str(item["route_id"]) if item.get("route_id") is not None else None,
                fee_minor=_int_or_none(fee.get("fee_minor", item.get("fee_minor"))),
                fee_rate_bps=_int_or_none(fee.get("rate_bps", item.get("fee_rate_bps"))),
                source="routing",
            )
        )
    return result


class RoutingClient:
    def __init__(self, base_url: str, *, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._http: JsonServiceClient | None = (
            JsonServiceClient(self.base_url, timeout_seconds=timeout_seconds) if self.base_url else None
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def decide(self, context: dict[str, Any]) -> list[Candidate] | None:
        """Routing's candidates for one method; [] when routing says there is none; None when it
        cannot answer (the caller falls back)."""
        if self._http is None:
            return None
        try:
            response = await self._http.post("/v1/route", json=context)
        except httpx.HTTPError as exc:
            log.warning("routing unreachable; falling back to merchant channel order", error=repr(exc))
            return None
        answer = json_object(response)
        code = answer.get("code")
        if response.status_code in (422, 503) and code in POLICY_ANSWERS:
            log.info("routing found no route", method=context.get("method"), code=code)
            return []
        if response.status_code // 100 != 2:
            log.warning("routing answered an error; falling back", status=response.status_code)
            return None
        return parse_candidates(answer)

    async def decide_methods(
        self, context: dict[str, Any], methods: Sequence[str]
    ) -> dict[str, list[Candidate] | None]:
        """Routing's candidates for every method in one call (`POST /v1/route/methods`: one request and one
        read of routing's shared state instead of one per method); per method as `decide` answers it, a method
        missing from the answer is None (falls back). A routing without that endpoint (404, during an upgrade)
        is asked once per method."""
        if self._http is None or not methods:
            return {}
        try:
            response = await self._http.post("/v1/route/methods", json={**context, "methods": list(methods)})
        except httpx.HTTPError as exc:
            log.warning("routing unreachable; falling back to merchant channel order", error=repr(exc))
            return {}
        if response.status_code == 404:
            return {method: await self.decide({**context, "method": method}) for method in methods}
        if response.status_code // 100 != 2:
            log.warning("routing answered an error; falling back", status=response.status_code)
            return {}
        decisions = json_object(response).get("decisions")
        answers: dict[str, list[Candidate] | None] = {}
        for decision in decisions if isinstance(decisions, list) else []:
            if not isinstance(decision, dict) or decision.get("method") not in methods:
                continue
            outcome = decision.get("outcome")
            if outcome in POLICY_ANSWERS:
                log.info("routing found no route", method=decision["method"], code=outcome)
                answers[decision["method"]] = []
            elif outcome == "routed":
                answers[decision["method"]] = parse_candidates(decision)
        return answers
