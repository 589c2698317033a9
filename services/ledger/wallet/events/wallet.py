"""`ledger.wallet` events (docs/contracts.md §3, wallet withdrawal): which operation state change publishes what,
with which data.

Pure: the store calls `events_for` inside the transaction that records the operation or changes its status
(the compare-and-set that only one caller wins), so each event is written to the outbox exactly once,
together with the change it announces. No card number goes on the bus: settlement reads the withdrawal's
card from `GET /v1/wallet/operations/{id}` (`details.bank_card`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ledger.events import TOP_UP_CREDITED, WITHDRAWAL_POSTED, WITHDRAWAL_REQUESTED, WITHDRAWAL_VOIDED

# (operation kind, status the operation now has) → event type. Only what another service acts on.
_TYPES: dict[tuple[str, str], str] = {
    ("withdrawal", "pending"): WITHDRAWAL_REQUESTED,
    ("withdrawal", "posted"): WITHDRAWAL_POSTED,
    ("withdrawal", "voided"): WITHDRAWAL_VOIDED,
    ("withdrawal", "expired"): WITHDRAWAL_VOIDED,  # an unfinished hold ran out: for settlement, a void
    ("top_up", "posted"): TOP_UP_CREDITED,
}


def event_for(operation: Mapping[Any, Any], status: str) -> tuple[str, dict[str, Any]] | None:
    """The (type, data) an operation publishes on reaching `status`, or None when nobody listens."""
    event_type = _TYPES.get((operation["kind"], status))
    if event_type is None:
        return None
    details = operation["details"] or {}
    data: dict[str, Any] = {
        "operation_id": operation["id"],
        "holder_id": operation["holder_id"],
        "amount_minor": operation["amount_minor"],
        "currency": operation["currency"],
        "idempotency_key": operation["idempotency_key"],
        "transfer_id": operation["transfer_id"],
        "status": status,
    }
    if operation["kind"] == "withdrawal":
        data["fee_minor"] = int(details.get("fee_minor", 0))
    else:
        data.update(
            payment_id=operation["idempotency_key"],
            subaccount=details.get("subaccount"),
            account_id=details.get("account_id"),
            merchant_id=details.get("merchant_id") or None,
            channel=details.get("channel"),
        )
    return event_type, data
