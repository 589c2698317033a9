"""Bulk migration into the ledger (services/migration drives it; docs/migration.md).

Why a bulk path next to `POST /v1/wallet/holders` and `POST /v1/transfers`: a platform arrives with hundreds
of thousands of holders; one request per holder and per balance is the slow baseline (bench/migration.py).
Here one request carries a batch: the holders and their sub-accounts are opened in ONE database transaction,
then every opening balance is one ordinary ledger transfer, all submitted as ONE command to the batching
writer (so they share its database transactions and its invariants: balanced, idempotent, verified).

Money: per run and currency a `migration_suspense` account (2901, credit-normal). The run's control total
is posted first (Dr escrow_bank — the funds the institution confirms it holds — or Dr points_issued for
points, Cr suspense); each opening balance is Dr suspense, Cr the holder's sub-account. After a complete
run the suspense is zero exactly when Σ openings = control total. A reversal posts the mirror of each
transfer (`corrects_transfer_id`), so nothing is ever edited.

Idempotency: holders by their deterministic id and body hash (the migration derives the id from the source
id); transfers by `(source="migration", key)` with keys derived from run id and source id, so a resumed or
repeated batch only replays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, UnitOfWork
from services.ledger.domain.engine import CreateTransfers, Outcome
from services.ledger.domain.transfers import Direction, Posting, TransferRequest
from services.ledger.domain.wallet.entitlements import HolderType, SubaccountType
from services.ledger.domain.wallet.postings import ESCROW_BANK, POINTS_CURRENCY, POINTS_ISSUED, Line, cr, dr
from services.ledger.store import wallet as wallet_store
from services.ledger.store.writer import LedgerWriter

MIGRATION_SOURCE = "migration"
PLATFORM = "platform"
MIGRATION_SUSPENSE = Line("migration_suspense", "2901", False)
IMPORTABLE_SUBACCOUNTS = (SubaccountType.BALANCE, SubaccountType.PREPAID, SubaccountType.POINTS)


@dataclass(frozen=True, slots=True)
class HolderImport:
    holder_id: str
    holder_type: HolderType
    name: str
    document_number: str  # checked by the migration (GB 11643 / GB 32100) and again here by the caller
    phone: str | None
    bank_card: str | None
    legal_person: str | None
    settlement_account: str | None
    verified: bool  # KYC verified at the source (the institution's record); level 2 also needs bank_card
    currency: str


@dataclass(frozen=True, slots=True)
class OpeningImport:
    source_id: str
    holder_id: str
    subaccount: SubaccountType
    amount_minor: int
    currency: str  # XXX for points
    merchant_holder_id: str = ""  # prepaid cards: the merchant that issued the card


@dataclass(frozen=True, slots=True)
class HolderResult:
    holder_id: str
    status: str  # created | existing | conflict (same id, other data) | document_taken


def opening_key(run_id: str, source_id: str) -> str:
    return f"{run_id}:opening:{source_id}"


def reversal_key(run_id: str, source_id: str) -> str:
    return f"{run_id}:reverse:{source_id}"


def control_key(run_id: str, currency: str, *, reverse: bool = False) -> str:
    return f"{run_id}:{'reverse-control' if reverse else 'control'}:{currency}"


def _holder_values(h: HolderImport) -> dict[str, Any]:
    values: dict[str, Any] = {
        "holder_id": h.holder_id, "holder_type": h.holder_type.value, "name": h.name,
        "document_number": h.document_number, "phone": h.phone, "bank_card": h.bank_card,
        "legal_person": h.legal_person, "settlement_account": h.settlement_account,
    }  # fmt: skip
    # The hash the public API stores for the same body: a later `POST /v1/wallet/holders` with the same data
    # is a replay, not a conflict.
    body_hash = wallet_store.body_hash({**values, "currency": h.currency})
    return {**values, "body_hash": body_hash, "kyc_status": "verified" if h.verified else "unverified"}


async def open_holders(uow: UnitOfWork, holders: list[HolderImport]) -> list[HolderResult]:
    """All holders of a batch and their default sub-accounts in one transaction; one result per holder."""
    results: list[HolderResult] = []
    async with uow.begin() as tx:
        for holder in holders:
            results.append(await _open_holder(tx, holder))
    return results


async def _open_holder(tx: Tx, holder: HolderImport) -> HolderResult:
    values = _holder_values(holder)
    sql = """INSERT INTO wallet_holders (holder_id, holder_type, name, document_number, phone, bank_card,
                    legal_person, settlement_account, kyc_status, body_hash)
             VALUES (:holder_id, :holder_type, :name, :document_number, :phone, :bank_card, :legal_person,
                     :settlement_account, :kyc_status, :body_hash)
             ON CONFLICT DO NOTHING RETURNING holder_id"""
    inserted = (await tx.conn.execute(text(sql), values)).scalar_one_or_none()
    if inserted is None:
        existing = await wallet_store.get_holder(tx.conn, holder.holder_id)
        if existing is None:
            return HolderResult(holder.holder_id, "document_taken")
        if existing["body_hash"] != values["body_hash"]:
            return HolderResult(holder.holder_id, "conflict")
        status = "existing"
    else:
        status = "created"
    await wallet_store.open_default_subaccounts(tx, holder.holder_id, holder.holder_type, holder.currency)
    return HolderResult(holder.holder_id, status)


async def suspense_account(tx: Tx, run_id: str, currency: str) -> str:
    return await wallet_store.shared_account(
        tx, holder_id=f"migration:{run_id}", line=MIGRATION_SUSPENSE, currency=currency
    )


async def post_control(
    uow: UnitOfWork, writer: LedgerWriter, *, run_id: str, currency: str, amount_minor: int, reverse: bool
) -> Outcome:
    """The institution's confirmed total enters the run's suspense (or leaves it again on reversal)."""
    async with uow.begin() as tx:
        suspense = await suspense_account(tx, run_id, currency)
        if currency == POINTS_CURRENCY:
            counterpart = await wallet_store.shared_account(
                tx, holder_id=PLATFORM, line=POINTS_ISSUED, currency=currency
            )
        else:
            counterpart = await wallet_store.shared_account(
                tx, holder_id=PLATFORM, line=ESCROW_BANK, currency=currency, credits_bounded=True
            )
    postings = [dr(counterpart, amount_minor, currency), cr(suspense, amount_minor, currency)]
    if reverse:
        postings = [_mirror(p) for p in postings]
    request = TransferRequest(
        source=MIGRATION_SOURCE,
        idempotency_key=control_key(run_id, currency, reverse=reverse),
        postings=tuple(postings),
        reference=run_id,
        metadata={"migration_run": run_id, "kind": "control"},
    )
    (outcome,) = await writer.submit(CreateTransfers((request,)))
    return outcome


async def post_openings(
    uow: UnitOfWork, writer: LedgerWriter, *, run_id: str, openings: list[OpeningImport]
) -> list[Outcome]:
    """One transfer per opening balance (Dr suspense, Cr sub-account), one writer command for the batch."""
    async with uow.begin() as tx:
        requests = []
        for o in openings:
            target = await wallet_store.open_subaccount(tx, o.holder_id, o.subaccount, o.currency, o.merchant_holder_id)
            suspense = await suspense_account(tx, run_id, o.currency)
            requests.append(
                TransferRequest(
                    source=MIGRATION_SOURCE,
                    idempotency_key=opening_key(run_id, o.source_id),
                    postings=(dr(suspense, o.amount_minor, o.currency), cr(target, o.amount_minor, o.currency)),
                    reference=o.source_id,
                    metadata={"migration_run": run_id, "kind": "opening"},
                )
            )
    return await writer.submit(CreateTransfers(tuple(requests))) if requests else []


async def post_reversals(
    uow: UnitOfWork, writer: LedgerWriter, *, run_id: str, source_ids: list[str]
) -> list[Outcome | None]:
    """The mirror of each opening transfer of the run; None where no opening was ever posted."""
    async with uow.read() as conn:
        originals = await _transfers_by_key(conn, [opening_key(run_id, s) for s in source_ids])
    requests: list[TransferRequest] = []
    positions: list[int] = []
    for i, source_id in enumerate(source_ids):
        original = originals.get(opening_key(run_id, source_id))
        if original is None:
            continue
        postings = tuple(_mirror(Posting(e["account_id"], Direction(e["direction"]), e["amount_minor"], e["currency"]))
                         for e in original["postings"])  # fmt: skip
        requests.append(
            TransferRequest(
                source=MIGRATION_SOURCE,
                idempotency_key=reversal_key(run_id, source_id),
                postings=postings,
                reference=source_id,
                corrects_transfer_id=original["id"],
                metadata={"migration_run": run_id, "kind": "reversal"},
            )
        )
        positions.append(i)
    outcomes = await writer.submit(CreateTransfers(tuple(requests))) if requests else []
    answer: list[Outcome | None] = [None] * len(source_ids)
    for position, outcome in zip(positions, outcomes, strict=True):
        answer[position] = outcome
    return answer


def _mirror(p: Posting) -> Posting:
    other = Direction.CREDIT if p.direction is Direction.DEBIT else Direction.DEBIT
    return Posting(p.account_id, other, p.amount_minor, p.currency)


async def _transfers_by_key(conn: AsyncConnection, keys: list[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    sql = """SELECT id, idempotency_key, postings FROM transfers
              WHERE source = :s AND idempotency_key = ANY(:k) AND status = 'posted'"""
    rows = (await conn.execute(text(sql), {"s": MIGRATION_SOURCE, "k": keys})).mappings().all()
    return {str(r["idempotency_key"]): {"id": r["id"], "postings": _json(r["postings"])} for r in rows}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def suspense_balances(conn: AsyncConnection, run_id: str) -> list[dict[str, Any]]:
    """Per currency: the run's suspense counters; `balance_minor` = credits - debits (0 after a good run)."""
    sql = """SELECT id, currency, debits_posted, credits_posted FROM accounts
              WHERE holder_id = :h AND kind = :k ORDER BY currency"""
    rows = (await conn.execute(text(sql), {"h": f"migration:{run_id}", "k": MIGRATION_SUSPENSE.kind})).mappings()
    return [
        {"account_id": r["id"], "currency": r["currency"], "debits_posted": int(r["debits_posted"]),
         "credits_posted": int(r["credits_posted"]),
         "balance_minor": int(r["credits_posted"]) - int(r["debits_posted"])}
        for r in rows
    ]  # fmt: skip
