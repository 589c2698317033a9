"""One reconciliation run: stream a channel bill from the cashier into PostgreSQL, classify it there.

Memory stays flat whatever the bill size: bill lines go from the cashier's NDJSON stream straight into a
COPY (one send buffer held at a time), Juhe's records of the day never leave the database, and items
are written by the database itself (`store/reconciliation_staging.py`). Python keeps a line counter and
the running net the channel settles. Once classified, the run asks the cashier to re-query payments
Juhe saw fail that the channel billed as paid, and posts the channel's settlement to the escrow account
(docs/ledger.md §3.5, key `stl_<channel>_<merchant>_<date>:channel`).

A run is of one mode (docs/test-mode.md): the bill of the merchant's configuration of that mode (a sandbox's for
test) is compared with that mode's records only, and the channel's settlement is posted in that book (a test
run's key ends `:channel:test`). A run that names no mode takes the mode of the configuration the cashier
downloaded the bill from (`X-Bill-Livemode`, carried on each line); live when nothing says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.settlement.clients.ledger import LedgerClient, LedgerRefused
from services.settlement.config import Settings
from services.settlement.domain.reconciliation import (
    Line,
    Outcome,
    Resolution,
    channel_says_succeeded,
    settled_minor,
)
from services.settlement.store import reconciliation as store
from services.settlement.store import reconciliation_staging as staging

log = get_logger("juhe.settlement.reconciliation")

# Channel bills are in yuan: every line of a day's bill is CNY.
BILL_CURRENCY = "CNY"
PLATFORM_HOLDER = "platform"
# Status mismatches read back for the cashier re-query, a page at a time.
REQUERY_PAGE_SIZE = 500


class BillSource(Protocol):
    """What a run needs of the cashier (`flows.cashier.CashierClient`): the bill as a stream of lines,
    and a re-query of one payment. The benchmark feeds a bill file through the same run."""

    def bill_lines(self, channel: str, bill_date: date, merchant_id: str) -> AsyncIterator[Line]:
        """The merchant's bill of the day. A source that knows modes (the cashier's) also takes `livemode=`: a run
        of a named mode passes it, a run without one does not, so a feed without modes (the benchmark's) serves."""
        ...

    async def requery(self, payment_id: str) -> str: ...


@dataclass
class BillTally:
    """What Python keeps of a bill while it streams through: two integers."""

    lines: int = 0
    settled_minor: int = 0


async def reconcile(
    uow: UnitOfWork,
    cashier: BillSource,
    settings: Settings,
    *,
    channel: str,
    merchant_id: str,
    bill_date: date,
    ledger: LedgerClient | None = None,
    livemode: bool | None = None,
) -> str:
    """Run and store one reconciliation of one mode; returns the run id. Only non-matched lines are stored as
    items. With a ledger, the bill's net is then posted as the channel's settlement to escrow (§3.5)."""
    run_id = new_id("rcn")
    tally = BillTally()
    # A run without a mode makes the call every bill source answers (the benchmark's feed too).
    named: dict[str, bool] = {} if livemode is None else {"livemode": livemode}
    lines = cashier.bill_lines(channel, bill_date, merchant_id, **named)
    try:
        first = await anext(lines, None)  # opens the bill: the cashier says which configuration's mode it is
    except Problem as exc:
        async with uow.begin() as tx:
            await store.insert_run(tx.conn, run_id, channel, merchant_id, bill_date, livemode=livemode is not False)
            await store.finish_run(tx.conn, run_id, status="failed", counts={}, bill_lines=0, error=exc.detail)
        raise
    if livemode is None:
        livemode = first is None or first.livemode is not False
    async with uow.begin() as tx:
        await store.insert_run(tx.conn, run_id, channel, merchant_id, bill_date, livemode=livemode)

    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        if first is None:
            return
        async for line in _chain(first, lines):
            tally.lines += 1
            tally.settled_minor += settled_minor(line)
            yield (
                tally.lines,
                line.kind,
                line.key,
                line.channel_trade_no,
                line.amount_minor,
                line.fee_minor,
                line.status,
                channel_says_succeeded(line),
            )

    try:
        async with uow.begin() as tx:
            await staging.stage(
                tx.conn, channel=channel, merchant_id=merchant_id, bill_date=bill_date, livemode=livemode
            )
            copied = await staging.copy_lines(tx.conn, rows())
            counts = await staging.classify(tx.conn, run_id, line_count=copied)
    except Problem as exc:
        async with uow.begin() as tx:
            await store.finish_run(
                tx.conn, run_id, status="failed", counts={}, bill_lines=tally.lines, error=exc.detail
            )
        raise
    await _auto_resolve(uow, cashier, run_id)
    error = None
    if ledger is not None:
        error = await post_channel_settlement(
            ledger,
            channel=channel,
            merchant_id=merchant_id,
            bill_date=bill_date,
            net_minor=tally.settled_minor,
            bill_lines=tally.lines,
            livemode=livemode,
        )
    async with uow.begin() as tx:
        await store.finish_run(tx.conn, run_id, status="finished", counts=counts, bill_lines=tally.lines, error=error)
    log.info(
        "reconciliation finished",
        run_id=run_id,
        channel=channel,
        bill_date=str(bill_date),
        settled_minor=tally.settled_minor,
        **counts,
    )
    return run_id


async def _chain(first: Line, rest: AsyncIterator[Line]) -> AsyncIterator[Line]:
    yield first
    async for line in rest:
        yield line


async def _auto_resolve(uow: UnitOfWork, cashier: BillSource, run_id: str) -> None:
    """A payment Juhe saw fail that the channel billed as paid: ask the cashier to re-query the channel
    (its outcome then arrives as a normal `payment.succeeded`, late_success). Read a page at a time."""
    after_id = 0
    while True:
        async with uow.read() as conn:
            items = await store.list_items(
                conn,
                run_id=run_id,
                outcome=Outcome.STATUS_MISMATCH.value,
                payment_id=None,
                merchant_order_no=None,
                after_id=after_id,
                limit=REQUERY_PAGE_SIZE,
            )
        answers = [
            (int(item["item_id"]), await cashier.requery(item["payment_id"]))
            for item in items
            if item["resolution"] == Resolution.CASHIER_REQUERY.value and item["payment_id"]
        ]
        if answers:
            async with uow.begin() as tx:  # one commit per page (a re-query asked twice is harmless)
                for item_id, status in answers:
                    await store.set_resolution(tx.conn, item_id, status)
        if len(items) < REQUERY_PAGE_SIZE:
            return
        after_id = int(items[-1]["item_id"])


def channel_settlement_key(channel: str, merchant_id: str, bill_date: date, livemode: bool = True) -> str:
    """One posting per channel, merchant account, bill day and mode: a re-run of the day replays it."""
    key = f"stl_{channel}_{merchant_id}_{bill_date.isoformat()}:channel"
    return key if livemode else f"{key}:test"


async def post_channel_settlement(
    ledger: LedgerClient,
    *,
    channel: str,
    merchant_id: str,
    bill_date: date,
    net_minor: int,
    bill_lines: int,
    livemode: bool = True,
) -> str | None:
    """§3.5: the channel settled the bill's net to the escrow account: Dr 1102 escrow_bank; Cr 1101
    channel_clearing[channel] (the reverse when refunds outweigh payments). The net is the bill's, not
    Juhe's: it is what reached the bank; any discrepancy then stays visible on channel_clearing. A day
    with nothing to move posts nothing. Returns None, or why it could not be posted (kept on the run; a
    re-run retries it with the same key)."""
    if net_minor == 0:
        return None
    key = channel_settlement_key(channel, merchant_id, bill_date, livemode)
    amount = abs(net_minor)
    try:
        escrow = await ledger.account_id(PLATFORM_HOLDER, "escrow_bank", BILL_CURRENCY, livemode=livemode)
        clearing = await ledger.channel_account_id("channel_clearing", channel, BILL_CURRENCY, livemode=livemode)
        debit, credit = (escrow, clearing) if net_minor > 0 else (clearing, escrow)
        transfer = await ledger.post_transfer(
            idempotency_key=key,
            postings=[
                {"account_id": debit, "direction": "debit", "amount_minor": amount, "currency": BILL_CURRENCY},
                {"account_id": credit, "direction": "credit", "amount_minor": amount, "currency": BILL_CURRENCY},
            ],
            reference=key.removesuffix(":test").removesuffix(":channel"),
            metadata={
                "kind": "channel_settlement",
                "channel": channel,
                "merchant_id": merchant_id,
                "bill_date": bill_date.isoformat(),
                "bill_lines": bill_lines,
            },
        )
    except (LedgerRefused, Problem) as exc:
        log.warning("channel settlement not posted", key=key, net_minor=net_minor, error=str(exc))
        return f"channel settlement {key} not posted: {exc}"
    log.info("channel settlement posted", key=key, net_minor=net_minor, transfer_id=transfer.get("id"))
    return None
