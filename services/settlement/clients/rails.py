"""Payout rails other than the bank: WeChat change and an Alipay account, reached through the cashier.

A payout or withdrawal carries a `rail`: `bank` (default, the bank sandbox protocol in clients/bank.py),
`wechat_change` (WeChat 商家转账 transfer-bills to an openid; the user confirms receipt in WeChat) or
`alipay_account` (`alipay.fund.trans.uni.transfer` to an Alipay user id). Settlement never imports the
cashier's connectors: as for channel profit sharing it calls the cashier's internal API
(`/v1/internal/transfers`), with the platform merchant whose channel accounts pay
(`channel_payout_merchant_id`). The answers are put in the bank's vocabulary, so the payout and withdrawal
state machines (and their ledger postings) are the same for every rail:

  channel status   → answer status   what follows
  succeeded        → SUCCEEDED       paid: §3.6 paid posting / wallet hold posted
  failed           → FAILED          not paid: instruction reversed / hold voided
  cancelled        → FAILED          (cancelled by us at the confirmation deadline, or expired unconfirmed
                                     at WeChat: `failure_code` is WeChat's fail_reason, e.g. OVERDUE_CLOSE)
  waiting_user     → WAITING_USER    the user must confirm; `user_action.package_info` is what their
                                     WeChat needs; cancelled by us after `transfer_confirm_seconds`
  pending          → PROCESSING      ask again
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from libs.common.http import json_object, service_client
from services.settlement.clients.bank import BankRefused, BankUnavailable

RAILS = ("bank", "wechat_change", "alipay_account")
RAIL_CHANNELS = {"wechat_change": "wechatpay", "alipay_account": "alipay"}
PAYEE_TYPES = {"wechat_change": "openid", "alipay_account": "ALIPAY_USER_ID"}
TRANSFERS_PATH = "/v1/internal/transfers"
WAITING_USER = "WAITING_USER"
_STATUSES = {
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "FAILED",
    "waiting_user": WAITING_USER,
    "pending": "PROCESSING",
    "not_found": "NOT_FOUND",
}
# Answers that will never change for this request (bank: PARAM_ERROR, PAYOUT_NO_USED; the cashier's
# channel_refused): the payout fails, its money goes back.
CHANNEL_REFUSED = "CHANNEL_REFUSED"
FINAL_REFUSALS = frozenset({"PARAM_ERROR", "PAYOUT_NO_USED", CHANNEL_REFUSED})


@dataclass
class ChannelRails:
    http: httpx.AsyncClient
    merchant_id: str  # the platform's merchant at the channels, whose account pays

    @classmethod
    def build(cls, cashier_url: str, merchant_id: str, *, timeout_seconds: float) -> ChannelRails:
        return cls(service_client(cashier_url, timeout_seconds=timeout_seconds), merchant_id)

    async def aclose(self) -> None:
        await self.http.aclose()

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        body = json_object(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise BankUnavailable(f"cashier answered {response.status_code}: {body.get('code')}")
        if response.status_code >= 400:
            code = CHANNEL_REFUSED if body.get("code") == "channel_refused" else str(body.get("code") or "")
            raise BankRefused(response.status_code, code, str(body.get("detail") or ""))
        status = str(body.get("status") or "")
        failure = body.get("fail_reason") or ("transfer_cancelled" if status == "cancelled" else None)
        return {
            "status": _STATUSES.get(status, "PROCESSING"),
            "bank_ref": body.get("channel_transfer_no"),
            "failure_code": failure,
            "user_action": body.get("user_action"),
        }

    async def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BankUnavailable(f"cashier unreachable: {exc!r}") from exc
        return self._answer(response)

    async def submit(
        self,
        rail: str,
        *,
        payout_no: str,
        amount_minor: int,
        currency: str,
        payee: str,
        payee_name: str | None,
        remark: str,
    ) -> dict[str, Any]:
        """Idempotent by payout_no (the channel's out_bill_no / out_biz_no): safe to repeat."""
        body = {
            "merchant_id": self.merchant_id,
            "channel": RAIL_CHANNELS[rail],
            "out_transfer_no": payout_no,
            "amount_minor": amount_minor,
            "currency": currency,
            "payee": payee,
            "payee_type": PAYEE_TYPES[rail],
            "payee_name": payee_name,
            "remark": remark,
        }
        return await self._send("POST", TRANSFERS_PATH, json=body)

    async def query(self, rail: str, payout_no: str) -> dict[str, Any]:
        return await self._send(
            "GET", f"{TRANSFERS_PATH}/{RAIL_CHANNELS[rail]}/{payout_no}", params={"merchant_id": self.merchant_id}
        )

    async def cancel(self, rail: str, payout_no: str) -> dict[str, Any]:
        return await self._send(
            "POST",
            f"{TRANSFERS_PATH}/{RAIL_CHANNELS[rail]}/{payout_no}/cancel",
            params={"merchant_id": self.merchant_id},
        )


def transfer_no(payout_no: str) -> str:
    """The channel's idempotency key for a payout: its id without separators, at most 32 characters (WeChat's
    out_bill_no is 5–32 letters and digits). Ids made by `new_id` end in 32 hex digits of a UUIDv7, so the
    last 32 characters are unique on their own."""
    return "".join(c for c in payout_no if c.isascii() and c.isalnum())[-32:]
