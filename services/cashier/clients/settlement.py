"""Settlement's client: the explicit split of a new payment, checked against the merchant's split rule
(docs/contracts.md §1, split check), and the nudge of a transfer a channel called back about.

Settlement owns split rules (docs/architecture.md §2), so the cashier asks
`POST {settlement_url}/v1/internal/split-checks` before it creates anything. Its answer decides: 200 → go on;
a 4xx problem about the split → the same status and `code` for the merchant; anything else (no URL configured,
unreachable, timeout, 5xx, an answer that is not about the split) → 503 `settlement_unavailable`. A split is
never accepted unchecked.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object
from libs.common.logging import get_logger
from services.cashier.clients import InternalClient, relayed_refusal
from services.cashier.domain.errors import SETTLEMENT_UNAVAILABLE

log = get_logger("juhe.cashier.split_checks")  # its name before the move (log queries filter on it)

TRANSFER_NUDGE_PATH = "/v1/internal/transfers/{out_transfer_no}/nudge"
SPLIT_CHECKS_PATH = "/v1/internal/split-checks"


class SettlementClient(InternalClient):
    async def check_split(
        self,
        *,
        merchant_id: str,
        amount_minor: int,
        currency: str,
        split: Sequence[tuple[str, int]],
        business_line: str = "",
    ) -> None:
        """Return when settlement accepts the split; raise the merchant-facing Problem otherwise.

        `business_line` is the payment's `metadata.business_line`: settlement picks the rule by it at
        success, so the check must be made against the same rule."""
        if self._http is None:
            raise Problem(SETTLEMENT_UNAVAILABLE, "no settlement service is configured to check the split")
        body = {
            "merchant_id": merchant_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "split": [{"receiver_id": receiver, "amount_minor": amount} for receiver, amount in split],
        }
        if business_line:
            body["business_line"] = business_line
        try:
            response = await self._http.post(SPLIT_CHECKS_PATH, json=body, headers=self.identity_headers())
        except httpx.HTTPError as exc:
            log.warning("settlement unreachable for a split check", error=repr(exc))
            raise Problem(SETTLEMENT_UNAVAILABLE, "settlement could not be reached to check the split") from exc
        if response.status_code == 200:
            return
        refusal = relayed_refusal(response, "The split was refused by settlement")
        if refusal is not None:
            raise refusal
        log.warning(
            "settlement answered a split check with an error",
            status=response.status_code,
            code=json_object(response).get("code"),
        )
        raise Problem(SETTLEMENT_UNAVAILABLE, f"settlement answered the split check with HTTP {response.status_code}")

    async def nudge_transfer(self, out_transfer_no: str) -> None:
        """A channel called back about a transfer: ask settlement to query it now. Best effort: settlement's own
        poll finds the same answer if this is lost, so a failure is only logged."""
        if self._http is None:
            return
        try:
            response = await self._http.post(
                TRANSFER_NUDGE_PATH.format(out_transfer_no=out_transfer_no), headers=self.identity_headers()
            )
        except httpx.HTTPError as exc:
            log.warning("settlement unreachable for a transfer nudge", error=repr(exc))
            return
        if response.status_code >= 300:
            log.warning("settlement refused a transfer nudge", status=response.status_code)
