"""The continuous settlement ↔ ledger check (docs/consistency.md): per holder and currency, settlement's
unsettled net (its entries not yet settled by a posted batch) must equal the posted balance of the holder's
merchant_pending (2201) account in the ledger.

Both sides apply the same business events independently (the ledger posts §3.1/§3.3 from the cashier's
events, settlement records them and posts splits, batches and profit sharing), so a reading taken while
events travel can differ for a moment. A difference is therefore reported as a mismatch only when two
readings `consistency_confirm_seconds` apart show the SAME non-zero difference for that holder and
currency: an event in flight changes the difference between readings, a real drift does not. Settlement's
own in-flight work (splits not yet posted to the ledger) is left out of its side. A mismatch is logged as
an error and exposed (endpoint, metrics); nothing is ever corrected here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge

from libs.common.db import UnitOfWork
from libs.common.logging import get_logger
from services.settlement.clients.ledger import LedgerClient
from services.settlement.config import Settings
from services.settlement.store import consistency as store

log = get_logger("juhe.settlement.consistency")
LEDGER_READS_CONCURRENT = 8

mismatch_minor = Gauge(
    "juhe_settlement_ledger_mismatch_minor",
    "Σ |settlement − ledger merchant_pending| of confirmed mismatches",
    ["currency"],
)
mismatched_merchants = Gauge(
    "juhe_settlement_ledger_mismatched_merchants",
    "Holders/currencies whose settlement net differs from the ledger (confirmed)",
)
last_check = Gauge("juhe_settlement_consistency_checked_timestamp_seconds", "When the last check finished")
check_ok = Gauge("juhe_settlement_consistency_ok", "1 when the last check found no mismatch, else 0")

Key = tuple[str, str, bool]  # holder, currency, livemode: each book is compared with its own ledger book


@dataclass(frozen=True, slots=True)
class Reading:
    settlement: dict[Key, int]
    ledger: dict[Key, int]

    def differences(self) -> dict[Key, int]:
        keys = self.settlement.keys() | self.ledger.keys()
        diff = {k: self.settlement.get(k, 0) - self.ledger.get(k, 0) for k in keys}
        return {k: d for k, d in diff.items() if d != 0}

    def item(self, key: Key) -> dict[str, Any]:
        s, ledger = self.settlement.get(key, 0), self.ledger.get(key, 0)
        return {
            "merchant_id": key[0],
            "currency": key[1],
            "livemode": key[2],
            "settlement_minor": s,
            "ledger_minor": ledger,
            "difference_minor": s - ledger,
        }


async def read(uow: UnitOfWork, ledger: LedgerClient) -> Reading:
    """Settlement's side first, then the ledger's: an event applied by both meanwhile shows as a difference
    that the next reading no longer has (never as a stable one)."""
    async with uow.read() as conn:
        mine = await store.unsettled_net(conn)
        holders = {k[0] for k in mine} | await store.entry_holders(conn) | await store.ledger_holders(conn)
    gate = asyncio.Semaphore(LEDGER_READS_CONCURRENT)

    async def balances(holder: str) -> dict[Key, int]:
        async with gate:
            found = await ledger.posted_balances(holder, "merchant_pending")
        return {(holder, currency, livemode): amount for (currency, livemode), amount in found.items()}

    theirs: dict[Key, int] = {}
    for part in await asyncio.gather(*(balances(h) for h in sorted(holders))):
        theirs.update(part)
    return Reading(mine, theirs)


async def run_check(uow: UnitOfWork, ledger: LedgerClient, settings: Settings) -> dict[str, Any]:
    """Read both sides; if they differ, read again after `consistency_confirm_seconds` and report what
    differs by the same amount both times. Stores the result, sets the metrics, logs mismatches as errors.
    Raises Problem(ledger_unavailable) when the ledger cannot be read (nothing stored then)."""
    first = await read(uow, ledger)
    last, confirmed = first, first.differences()
    if confirmed and settings.consistency_confirm_seconds > 0:
        await asyncio.sleep(settings.consistency_confirm_seconds)
        last = await read(uow, ledger)
        now_diff = last.differences()
        confirmed = {k: d for k, d in confirmed.items() if now_diff.get(k) == d}
    mismatches = [last.item(k) for k in sorted(confirmed)]
    unconfirmed = [last.item(k) for k in sorted(last.differences().keys() - confirmed.keys())]
    holders = {k[0] for k in last.settlement.keys() | last.ledger.keys()}
    async with uow.begin() as tx:
        row = await store.save(
            tx.conn,
            {
                "ok": not mismatches,
                "holders_checked": len(holders),
                "mismatches": mismatches,
                "differences": unconfirmed,
                "checked_at": datetime.now(UTC),
            },
        )
    result = as_result(row)
    _export(result, {k[1] for k in last.settlement.keys() | last.ledger.keys()})
    for item in mismatches:
        log.error("settlement and ledger disagree on a merchant's pending funds", **item)
    return result


def as_result(row: Any) -> dict[str, Any]:
    """The API's shape of a stored check (see README: GET /v1/settlement/consistency)."""
    if row is None:
        return {"ok": None, "checked_at": None, "holders_checked": 0, "mismatches": [], "unconfirmed": []}
    return {
        "ok": bool(row["ok"]),
        "checked_at": row["checked_at"],
        "holders_checked": int(row["holders_checked"]),
        "mismatches": list(row["mismatches"]),
        "unconfirmed": list(row["differences"]),
    }


def _export(result: dict[str, Any], currencies: set[str]) -> None:
    totals = dict.fromkeys(currencies, 0)
    for item in result["mismatches"]:
        totals[item["currency"]] = totals.get(item["currency"], 0) + abs(int(item["difference_minor"]))
    for currency, total in totals.items():
        mismatch_minor.labels(currency=currency).set(total)
    mismatched_merchants.set(len(result["mismatches"]))
    check_ok.set(1 if result["ok"] else 0)
    last_check.set(result["checked_at"].timestamp())


async def latest(uow: UnitOfWork) -> dict[str, Any]:
    async with uow.read() as conn:
        return as_result(await store.latest(conn))
