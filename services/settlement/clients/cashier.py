"""The cashier, as settlement sees it: its internal bill stream and its payment re-query.

Settlement never imports the cashier; it reads `GET /v1/internal/bills/{channel}/{date}` (NDJSON, one
parsed bill line per row, downloaded through the merchant's connector) over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from libs.common.errors import Problem
from libs.common.http import service_client
from services.settlement.domain.errors import BILL_UNAVAILABLE, CASHIER_UNAVAILABLE
from services.settlement.domain.reconciliation import Line

# The cashier asks the channel again about a payment and answers the payment as it then stands: the
# reconciliation run asks it for a payment Juhe marked failed that the channel billed as paid (no answer or
# a refusal: `unavailable` on the item, for a person), and a person asks it from the exceptions pool.
REQUERY_PATH = "/v1/internal/payments/{payment_id}/requery"
# What a person's re-query keeps of the cashier's payment answer.
REQUERY_RESULT_FIELDS = ("status", "late_success", "channel", "channel_trade_no", "amount_minor", "failure_code")
# Channel profit sharing (docs/contracts.md §2): one order, always asked with the same order_no and body.
SHARE_PATH = "/v1/internal/payments/{payment_id}/profit-sharing"


class CashierBusy(Exception):
    """No answer to act on (unreachable, 5xx, 429): ask again later with the same request."""


class CashierRefused(Exception):
    """The cashier will never take this request (4xx): `code` is its problem code, else the HTTP status."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class CashierClient:
    http: httpx.AsyncClient

    @classmethod
    def build(cls, base_url: str, *, timeout_seconds: float) -> CashierClient:
        return cls(service_client(base_url, timeout_seconds=timeout_seconds))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def bill_lines(
        self, channel: str, bill_date: date, merchant_id: str, *, livemode: bool | None = None
    ) -> AsyncIterator[Line]:
        """Stream the bill of the merchant's configuration of that mode (a sandbox's for test; without a mode, its
        only configuration of the channel), one line at a time (never the whole bill in memory); each line says
        the configuration's mode (`X-Bill-Livemode`)."""
        url = f"/v1/internal/bills/{channel}/{bill_date.isoformat()}"
        params = {"merchant_id": merchant_id}
        if livemode is not None:
            params["livemode"] = "true" if livemode else "false"
        try:
            async with self.http.stream("GET", url, params=params) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode(errors="replace")[:300]
                    raise Problem(BILL_UNAVAILABLE, f"cashier answered {response.status_code}: {body}")
                said = response.headers.get("X-Bill-Livemode")
                bill_livemode = None if said is None else said == "true"
                async for raw in response.aiter_lines():
                    if raw:
                        yield line_from_json(raw)._replace(livemode=bill_livemode)
        except httpx.HTTPError as exc:
            raise Problem(BILL_UNAVAILABLE, f"cashier: {exc!r}") from exc

    async def requery(self, payment_id: str) -> str:
        """`requested` when the cashier accepted to re-query the channel, else `unavailable`."""
        try:
            response = await self.http.post(REQUERY_PATH.format(payment_id=payment_id))
        except httpx.HTTPError:
            return "unavailable"
        return "requested" if response.status_code < 300 else "unavailable"

    async def requery_payment(self, payment_id: str) -> dict[str, Any]:
        """The cashier's answer to a re-query a person asked for (reconciliation exceptions pool): the
        payment as it stands after the channel was asked again, or the cashier's refusal (`code`, e.g.
        `payment_not_found`). No answer or a 5xx is 503 `cashier_unavailable`: nothing is recorded then."""
        try:
            response = await self.http.post(REQUERY_PATH.format(payment_id=payment_id))
        except httpx.HTTPError as exc:
            raise Problem(CASHIER_UNAVAILABLE, f"cashier: {exc!r}") from exc
        if response.status_code >= 500:
            raise Problem(CASHIER_UNAVAILABLE, f"cashier answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.status_code >= 300:
            return {"http_status": response.status_code, "code": str(body.get("code") or "cashier_refused")}
        return {"http_status": response.status_code, **{k: body.get(k) for k in REQUERY_RESULT_FIELDS}}

    async def share_profit(self, payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Ask the cashier to have the channel pay a profit-sharing order; its answer is the order as it stands
        (`status` pending | succeeded | failed, `channel_order_id`, `receivers`). The cashier and the channel are
        idempotent by the order_no, so a repeat after a lost answer is safe."""
        try:
            response = await self.http.post(SHARE_PATH.format(payment_id=payment_id), json=body)
        except httpx.HTTPError as exc:
            raise CashierBusy(f"cashier unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise CashierBusy(f"cashier answered {response.status_code}: {response.text[:200]}")
        answer: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise CashierRefused(str(answer.get("code") or response.status_code))
        return answer


def line_from_json(raw: str | bytes) -> Line:
    row = json.loads(raw)
    refund = row["kind"] == "refund"
    return Line(
        kind=row["kind"],
        key=row["out_refund_no"] if refund else row["out_trade_no"],
        channel_trade_no=row.get("channel_trade_no") or "",
        amount_minor=int(row["amount_minor"]),
        fee_minor=int(row["fee_minor"]),
        status=str(row.get("status", "")),
    )
