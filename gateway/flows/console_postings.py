"""The ledger's postings of one payment (and its refunds) for the merchant console, only the merchant's own lines.

Why here: the ledger's transfer and account reads are the platform's (`/v1/transfers`, `/v1/accounts` are
platform-only at the gateway: a transfer names every party's accounts). A merchant member may see what the ledger
posted for its payment on its own accounts, so the gateway reads the transfers as the platform and hands back only
the lines whose account the member's merchant holds; a payment of another merchant has none, so nothing leaks.

The cashier's events are posted under `(source "cashier", idempotency key "<payment id>:succeeded")` and
`"<refund id>:succeeded"` (services/ledger/events/postings.py), which is how they are found: no scan.
"""

from __future__ import annotations

from typing import Any

from gateway.clients.services import PlatformCalls, ServiceUnavailable
from gateway.domain.errors import UPSTREAM_UNAVAILABLE
from libs.common.errors import Problem

SOURCE_CASHIER = "cashier"  # the ledger's source of the cashier's postings (services/ledger/events/postings.py)
REFUNDS_MAX = 20  # a payment's refunds whose postings one page asks for


async def merchant_postings(
    calls: PlatformCalls, *, platform_id: str, merchant_id: str, payment_id: str, refund_ids: list[str]
) -> list[dict[str, Any]]:
    """The lines the ledger posted for the payment's success and each refund's, on `merchant_id`'s accounts only,
    in posting order: `{transfer_id, event, reference, created_at, account_id, kind, code, channel, direction,
    amount_minor, currency}`. A transfer not posted (yet) is left out. 503 when the ledger does not answer."""
    accounts: dict[str, dict[str, Any]] = {}
    lines: list[dict[str, Any]] = []
    events = [("payment", payment_id), *(("refund", r) for r in refund_ids[:REFUNDS_MAX])]
    try:
        for event, reference in events:
            status, transfer = await calls.call(
                "ledger",
                "GET",
                f"/v1/transfers?source={SOURCE_CASHIER}&idempotency_key={reference}:succeeded",
                platform_id=platform_id,
            )
            if status != 200:
                continue
            for posting in transfer.get("postings", []):
                account = accounts.get(posting["account_id"])
                if account is None:
                    _, account = await calls.call(
                        "ledger", "GET", f"/v1/accounts/{posting['account_id']}", platform_id=platform_id
                    )
                    accounts[posting["account_id"]] = account
                if account.get("holder_id") != merchant_id:
                    continue
                lines.append(
                    {
                        "transfer_id": transfer["id"],
                        "event": event,
                        "reference": reference,
                        "created_at": transfer.get("created_at"),
                        "account_id": posting["account_id"],
                        "kind": account.get("kind"),
                        "code": account.get("code"),
                        "channel": (account.get("metadata") or {}).get("channel"),
                        "direction": posting["direction"],
                        "amount_minor": posting["amount_minor"],
                        "currency": posting["currency"],
                    }
                )
    except ServiceUnavailable as exc:
        raise Problem(UPSTREAM_UNAVAILABLE, "the ledger did not answer; try again") from exc
    return lines
