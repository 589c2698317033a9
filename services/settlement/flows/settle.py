"""Settlement runs (清算 → 结算): due entries → one batch per holder per day → one ledger transfer (§3.5).

Test and live never mix: a batch holds the entries of one mode (unique per holder, currency, day and mode) and a
test batch moves the test book's accounts only.

Exactly once, even when two runners race or one crashes mid-run: a batch and the entries it takes are
written in one transaction (unique per holder, currency, day and mode), and its ledger transfer carries the
key `stl_…:merchant`, so a retry after a crash is answered with the original transfer. `batch.settled`
goes into the outbox in the transaction that marks the batch posted, so it is published exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.settlement.clients.ledger import LedgerClient, LedgerRefused
from services.settlement.config import Settings
from services.settlement.domain.cycles import DEFAULT_TIMEZONE
from services.settlement.events import BATCH_SETTLED, BATCHES_TOPIC
from services.settlement.store import cycles

log = get_logger("juhe.settlement.cycles")


@dataclass(frozen=True, slots=True)
class RunResult:
    cycle_date: date
    batches_built: int
    batches_posted: int
    batches_failed: int


async def run_cycle(uow: UnitOfWork, ledger: LedgerClient, settings: Settings, cycle_date: date) -> RunResult:
    built = 0
    async with uow.read() as conn:
        holders = await cycles.due_holders(conn, cycle_date, settings.settlement_holders_per_run_max)
    for holder_id, currency, livemode in holders:
        async with uow.begin() as tx:
            if await cycles.build_batch(tx.conn, new_id("stl"), holder_id, currency, cycle_date, livemode=livemode):
                built += 1
    posted = failed = 0
    async with uow.read() as conn:
        batches = await cycles.unposted_batches(conn, settings.settlement_holders_per_run_max)
    for batch in batches:
        try:
            book = bool(batch["livemode"])  # a test batch moves the test book's 2201 → 2202 (docs/ledger.md §2.1)
            pending = await ledger.account_id(batch["holder_id"], "merchant_pending", batch["currency"], livemode=book)
            settled = await ledger.account_id(batch["holder_id"], "merchant_settled", batch["currency"], livemode=book)
            amount, currency = int(batch["amount_minor"]), batch["currency"]
            transfer = await ledger.post_transfer(
                idempotency_key=f"{batch['batch_id']}:merchant",
                postings=[
                    {"account_id": pending, "direction": "debit", "amount_minor": amount, "currency": currency},
                    {"account_id": settled, "direction": "credit", "amount_minor": amount, "currency": currency},
                ],
                reference=batch["batch_id"],
                metadata={"kind": "settlement", "cycle_date": batch["cycle_date"].isoformat()},
            )
        except (LedgerRefused, Problem) as exc:
            failed += 1
            log.warning("settlement batch not posted", batch_id=batch["batch_id"], error=repr(exc))
            continue
        async with uow.begin() as tx:
            now = datetime.now(UTC)
            if await cycles.mark_batch_posted(tx.conn, batch["batch_id"], str(transfer["id"]), now):
                posted += 1
                # in the same transaction as the status change: published once, however often this runs
                tx.publish(
                    topic=BATCHES_TOPIC,
                    type=BATCH_SETTLED,
                    subject=batch["batch_id"],
                    data={
                        "batch_id": batch["batch_id"],
                        "holder_id": batch["holder_id"],
                        "currency": currency,
                        "cycle_date": batch["cycle_date"].isoformat(),
                        "amount_minor": amount,
                        "entry_count": int(batch["entry_count"]),
                        "amounts_by_kind": await cycles.batch_totals_by_kind(tx.conn, batch["batch_id"]),
                        "ledger_transfer_id": str(transfer["id"]),
                        "settled_at": now.isoformat(),
                        "livemode": book,
                    },
                )
    return RunResult(cycle_date, built, posted, failed)


def today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(DEFAULT_TIMEZONE).date()
