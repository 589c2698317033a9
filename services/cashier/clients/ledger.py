"""The ledger's hold on a wallet balance for a top-up refund (`POST {ledger_url}/v1/wallet/top-up-refunds`).

A top-up's money is in the holder's wallet (docs/ledger.md §3.7), so before the cashier asks the channel to
give it back, the ledger holds that much of the holder's cash balance (a pending `top_up_refund` operation,
key = the refund id): the holder cannot spend it while the channel refunds, and a refund larger than what is
left of the balance is refused before anything is asked. The ledger posts the hold on `refund.succeeded` and
voids it on `refund.failed` (its consumer of `cashier.refunds`), so no outcome path of the cashier has to.
"""

from __future__ import annotations

import httpx

from libs.common.errors import Problem
from libs.common.http import json_object
from libs.common.logging import get_logger
from services.cashier.clients import InternalClient
from services.cashier.domain.errors import LEDGER_UNAVAILABLE, REFUND_EXCEEDS_BALANCE, REFUND_NOT_ALLOWED

log = get_logger("juhe.cashier.ledger")

TOP_UP_REFUNDS_PATH = "/v1/wallet/top-up-refunds"


class LedgerClient(InternalClient):
    @property
    def configured(self) -> bool:
        return self._http is not None

    async def hold_top_up_refund(self, *, refund_id: str, payment_id: str, amount_minor: int, currency: str) -> None:
        """Hold the refund on the holder's balance (idempotent by refund id at the ledger). 409
        `refund_exceeds_balance` (with `available_minor`) when the holder spent the rest, 409 `refund_not_allowed`
        when the ledger has not credited the top-up to a wallet, 503 `ledger_unavailable` otherwise."""
        if self._http is None:
            raise Problem(REFUND_NOT_ALLOWED, "no ledger is configured to hold the top-up's wallet balance")
        body = {"refund_id": refund_id, "payment_id": payment_id, "amount_minor": amount_minor, "currency": currency}
        try:
            response = await self._http.post(TOP_UP_REFUNDS_PATH, json=body, headers=self.identity_headers())
        except httpx.HTTPError as exc:
            log.warning("ledger unreachable for a top-up refund hold", error=repr(exc), refund_id=refund_id)
            raise Problem(LEDGER_UNAVAILABLE, "the ledger could not be reached to hold the wallet balance") from exc
        if response.status_code in (200, 201):
            return
        answer = json_object(response)
        code = answer.get("code")
        if code == "top_up_refund_exceeds_balance":
            available = answer.get("available_minor")
            raise Problem(
                REFUND_EXCEEDS_BALANCE,
                "the holder already spent part of this top-up: at most what is left of the cash balance",
                available_minor=available if isinstance(available, int) else 0,
            )
        if code == "top_up_not_credited":
            raise Problem(REFUND_NOT_ALLOWED, "the ledger has not credited this top-up to a wallet (yet)")
        log.warning("ledger refused a top-up refund hold", status=response.status_code, code=code)
        raise Problem(LEDGER_UNAVAILABLE, f"the ledger answered the hold with HTTP {response.status_code}")
