"""Posting split executions to the ledger (docs/ledger.md §3.4), exactly once.

The split row is written in the inbox transaction of the payment event; this loop turns it into one
ledger transfer with idempotency key = split id. A crash after the ledger answered but before the row
is marked posted only means the next round asks again and gets the original transfer back (replayed).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.logging import get_logger
from libs.common.web import Runtime
from services.settlement.config import Settings
from services.settlement.events import SPLIT_POSTED, SPLITS_TOPIC
from services.settlement.flows.ledger import LedgerClient, LedgerRefused
from services.settlement.store import records

log = get_logger("juhe.settlement.splits")


async def receiver_account(ledger: LedgerClient, receiver: Any, currency: str) -> str:
    if receiver["kind"] == "platform":
        return await ledger.account_id("platform", "platform_fee_income", currency)
    return await ledger.account_id(receiver["holder_id"], "merchant_pending", currency)


async def split_postings(uow: UnitOfWork, ledger: LedgerClient, split: Any) -> list[dict[str, Any]]:
    """Net movement per account: receivers gain (split) or give back (reversal) against the payee's 2201.
    A receiver whose account is the payee's own nets to zero and needs no posting."""
    sign = 1 if split["kind"] == "split" else -1
    allocations: dict[str, int] = dict(split["allocations"])
    async with uow.read() as conn:
        known = await records.receivers_by_id(conn, list(allocations))
    currency = split["currency"]
    payee = await ledger.account_id(split["merchant_id"], "merchant_pending", currency)
    net: dict[str, int] = {}
    for receiver_id, amount in allocations.items():
        if amount == 0:
            continue
        account = await receiver_account(ledger, known[receiver_id], currency)
        net[account] = net.get(account, 0) + sign * amount
        net[payee] = net.get(payee, 0) - sign * amount
    return [
        {"account_id": account, "direction": "credit" if amount > 0 else "debit", "amount_minor": abs(amount),
         "currency": currency}
        for account, amount in sorted(net.items()) if amount != 0
    ]  # fmt: skip


async def post_due_splits(uow: UnitOfWork, ledger: LedgerClient, settings: Settings) -> int:
    """One round: lease due splits, post each, mark it. Returns how many were posted."""
    now = datetime.now(UTC)
    async with uow.begin() as tx:
        due = await records.claim_due_splits(
            tx.conn, now=now, lease_until=now + timedelta(seconds=settings.split_lease_seconds),
            limit=settings.split_batch_max,
        )  # fmt: skip
    posted = 0
    for split in due:
        try:
            postings = await split_postings(uow, ledger, split)
            transfer_id: str | None = None
            if postings:
                transfer = await ledger.post_transfer(
                    idempotency_key=split["split_id"],
                    postings=postings,
                    reference=split["refund_id"] or split["payment_id"],
                    metadata={"kind": split["kind"], "payment_id": split["payment_id"]},
                )
                transfer_id = str(transfer["id"])
        except (LedgerRefused, Problem, KeyError) as exc:
            failed = isinstance(exc, LedgerRefused) or split["attempt_count"] >= settings.split_attempts_max
            backoff = settings.split_retry_base_seconds * 2 ** min(int(split["attempt_count"]), 10)
            async with uow.begin() as tx:
                retry_at = datetime.now(UTC) + timedelta(seconds=backoff)
                await records.mark_split_retry(tx.conn, split["split_id"], repr(exc), retry_at, failed=failed)
            log.warning("split not posted", split_id=split["split_id"], error=repr(exc), failed=failed)
            continue
        async with uow.begin() as tx:
            if await records.mark_split_posted(tx.conn, split["split_id"], transfer_id, datetime.now(UTC)):
                posted += 1
                tx.publish(topic=SPLITS_TOPIC, type=SPLIT_POSTED, subject=split["split_id"], data={
                    "split_id": split["split_id"], "kind": split["kind"], "payment_id": split["payment_id"],
                    "refund_id": split["refund_id"], "merchant_id": split["merchant_id"], "currency": split["currency"],
                    "allocations": dict(split["allocations"]), "ledger_transfer_id": transfer_id,
                })  # fmt: skip
    return posted


async def split_loop(runtime: Runtime) -> None:
    """Background task: post due splits forever."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    ledger: LedgerClient = runtime.extras["ledger"]
    while True:
        try:
            await post_due_splits(runtime.uow, ledger, settings)
        except Exception:
            log.exception("split round failed")
        await asyncio.sleep(settings.split_interval_seconds)
