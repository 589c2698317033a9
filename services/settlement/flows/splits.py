"""Posting split executions to the ledger (docs/ledger.md §3.4), exactly once.

The split row is written in the inbox transaction of the payment event; this loop turns it into one
ledger transfer with idempotency key = split id. A crash after the ledger answered but before the row
is marked posted only means the next round asks again and gets the original transfer back (replayed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.logging import get_logger
from services.settlement.clients.ledger import LedgerClient, LedgerRefused
from services.settlement.config import Settings
from services.settlement.domain.splits import PAYEE
from services.settlement.events import SPLIT_POSTED, SPLITS_TOPIC
from services.settlement.flows.profit_sharing import order_for_split
from services.settlement.store import records

log = get_logger("juhe.settlement.splits")


async def receiver_account(ledger: LedgerClient, receiver: Any, currency: str, *, livemode: bool = True) -> str:
    """The receiver's account in the split's book: a test payment's split moves test money only."""
    if receiver["kind"] == "platform":
        return await ledger.account_id("platform", "platform_fee_income", currency, livemode=livemode)
    return await ledger.account_id(receiver["holder_id"], "merchant_pending", currency, livemode=livemode)


async def split_postings(uow: UnitOfWork, ledger: LedgerClient, split: Any) -> list[dict[str, Any]]:
    """Net movement per account: receivers gain (split) or give back (reversal) against the payee's 2201.
    A receiver whose account is the payee's own nets to zero and needs no posting."""
    sign = 1 if split["kind"] == "split" else -1
    allocations: dict[str, int] = dict(split["allocations"])
    async with uow.read() as conn:
        known = await records.receivers_by_id(conn, list(allocations))
    currency, book = split["currency"], bool(split["livemode"])
    payee = await ledger.account_id(split["merchant_id"], "merchant_pending", currency, livemode=book)
    net: dict[str, int] = {}
    for receiver_id, amount in allocations.items():
        if amount == 0 or receiver_id == PAYEE:  # what an explicit split leaves stays on the payee's 2201
            continue
        account = await receiver_account(ledger, known[receiver_id], currency, livemode=book)
        net[account] = net.get(account, 0) + sign * amount
        net[payee] = net.get(payee, 0) - sign * amount
    return [
        {
            "account_id": account,
            "direction": "credit" if amount > 0 else "debit",
            "amount_minor": abs(amount),
            "currency": currency,
        }
        for account, amount in sorted(net.items())
        if amount != 0
    ]


async def process_split(uow: UnitOfWork, ledger: LedgerClient, settings: Settings, split: Any) -> bool:
    """Take one split one step in the ledger; True when it reached a final ledger state this time.

    realtime `pending` → one posted transfer → `posted`; escrow `pending` → a hold → `held`;
    `confirming` → the hold posted → `posted`; `voiding` → the hold voided → `voided`."""
    status, split_id = split["status"], split["split_id"]
    try:
        transfer_id: str | None = split["ledger_transfer_id"]
        if status == "pending":
            postings = await split_postings(uow, ledger, split)
            if postings:
                transfer = await ledger.post_transfer(
                    idempotency_key=split_id,
                    postings=postings,
                    reference=split["refund_id"] or split["payment_id"],
                    metadata={"kind": split["kind"], "payment_id": split["payment_id"]},
                    pending=split["mode"] == "escrow",
                )
                transfer_id = str(transfer["id"])
            to_status = "held" if split["mode"] == "escrow" and postings else "posted"
        elif status == "confirming":
            if transfer_id:
                await ledger.post_hold(transfer_id)
            to_status = "posted"
        elif status == "voiding":
            if not transfer_id:  # the hold may exist even though its answer was never stored here
                found = await ledger.find_transfer(split_id)
                transfer_id = str(found["id"]) if found else None
            if transfer_id:
                await ledger.void_hold(transfer_id)
            to_status = "voided"
        else:
            return False
    except (LedgerRefused, Problem, KeyError) as exc:
        refused = isinstance(exc, LedgerRefused) and status == "pending"
        failed = refused or split["attempt_count"] >= settings.split_attempts_max
        backoff = settings.split_retry_base_seconds * 2 ** min(int(split["attempt_count"]), 10)
        async with uow.begin() as tx:
            retry_at = datetime.now(UTC) + timedelta(seconds=backoff)
            await records.mark_split_retry(tx.conn, split_id, repr(exc), retry_at, failed=failed, status=status)
        log.warning("split not moved", split_id=split_id, status=status, error=repr(exc), failed=failed)
        return False
    async with uow.begin() as tx:
        moved = await records.mark_split_posted(
            tx.conn, split_id, transfer_id, datetime.now(UTC), from_status=status, to_status=to_status
        )
        if moved and to_status == "posted":
            await order_for_split(tx, split)  # channel profit sharing of the now final split (docs/contracts.md §2)
            tx.publish(
                topic=SPLITS_TOPIC,
                type=SPLIT_POSTED,
                subject=split_id,
                data={
                    "split_id": split_id,
                    "kind": split["kind"],
                    "mode": split["mode"],
                    "payment_id": split["payment_id"],
                    "refund_id": split["refund_id"],
                    "merchant_id": split["merchant_id"],
                    "currency": split["currency"],
                    "allocations": dict(split["allocations"]),
                    "ledger_transfer_id": transfer_id,
                    "livemode": bool(split["livemode"]),
                },
            )
    return moved and to_status in ("posted", "voided")


async def post_due_splits(uow: UnitOfWork, ledger: LedgerClient, settings: Settings) -> int:
    """One round: lease due splits, move each one step. Returns how many reached posted/voided."""
    now = datetime.now(UTC)
    async with uow.begin() as tx:
        due = await records.claim_due_splits(
            tx.conn,
            now=now,
            lease_until=now + timedelta(seconds=settings.split_lease_seconds),
            limit=settings.split_batch_max,
        )
    done = 0
    for split in due:
        if await process_split(uow, ledger, settings, split):
            done += 1
    return done
