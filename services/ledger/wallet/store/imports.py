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

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, UnitOfWork
from libs.common.ids import new_id
from services.ledger.domain import chart
from services.ledger.domain.engine import CreateTransfers, Outcome
from services.ledger.domain.transfers import Direction, Posting, TransferRequest
from services.ledger.events import ACCOUNT_OPENED, ACCOUNTS_TOPIC
from services.ledger.events.accounts import NOT_HASHED, AccountCreateRequest, AccountFlagsSchema, AccountResponse
from services.ledger.events.postings import account_key
from services.ledger.store.codec import account_from_row
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain.entitlements import HolderType, SubaccountType
from services.ledger.wallet.domain.postings import (
    CHART_SUBACCOUNTS,
    MERCHANT_SUBACCOUNTS,
    PERSON_SUBACCOUNTS,
    POINTS_CURRENCY,
    SUBACCOUNT_CHART,
    cr,
    dr,
)
from services.ledger.wallet.store import wallet as wallet_store

MIGRATION_SOURCE = "migration"
PLATFORM = "platform"
IMPORTABLE_SUBACCOUNTS = (SubaccountType.BALANCE, SubaccountType.PREPAID, SubaccountType.POINTS, SubaccountType.CREDIT)


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
    credit_limit_minor: int | None = None  # credit lines: the line; amount_minor is what is owed on it


@dataclass(frozen=True, slots=True)
class HolderResult:
    holder_id: str
    status: str  # created | existing | conflict (same id, other data) | document_taken


def opening_key(run_id: str, source_id: str) -> str:
    return f"{run_id}:opening:{source_id}"


def reversal_key(run_id: str, source_id: str) -> str:
    return f"{run_id}:reverse:{source_id}"


def control_key(run_id: str, currency: str, *, reverse: bool = False, credit: bool = False) -> str:
    return f"{run_id}:{'reverse-control' if reverse else 'control'}:{currency}{':credit' if credit else ''}"


def _holder_values(h: HolderImport) -> dict[str, Any]:
    values: dict[str, Any] = {
        "holder_id": h.holder_id,
        "holder_type": h.holder_type.value,
        "name": h.name,
        "document_number": h.document_number,
        "phone": h.phone,
        "bank_card": h.bank_card,
        "legal_person": h.legal_person,
        "settlement_account": h.settlement_account,
    }
    # The hash the public API stores for the same body: a later `POST /v1/wallet/holders` with the same data
    # is a replay, not a conflict.
    body_hash = wallet_store.body_hash({**values, "currency": h.currency})
    return {**values, "body_hash": body_hash, "kyc_status": "verified" if h.verified else "unverified"}


async def open_holders(uow: UnitOfWork, holders: list[HolderImport]) -> list[HolderResult]:
    """All holders of a batch and their default sub-accounts in one transaction, set-based (a statement per
    table for the whole batch, not per holder: opening a person is ~10 rows); one result per holder."""
    if not holders:
        return []
    values = [_holder_values(h) for h in holders]
    columns = (
        "holder_id",
        "holder_type",
        "name",
        "document_number",
        "phone",
        "bank_card",
        "legal_person",
        "settlement_account",
        "kyc_status",
        "body_hash",
    )
    sql = f"""INSERT INTO wallet_holders ({", ".join(columns)})
              SELECT * FROM unnest({", ".join(f"CAST(:{c} AS text[])" for c in columns)})
              ON CONFLICT DO NOTHING RETURNING holder_id"""
    async with uow.begin() as tx:
        params = {c: [v[c] for v in values] for c in columns}
        created = set((await tx.conn.execute(text(sql), params)).scalars())
        others = [v["holder_id"] for v in values if v["holder_id"] not in created]
        found: dict[str, str] = {}
        if others:
            found = dict((await tx.conn.execute(text(_HASHES_SQL), {"ids": others})).all())
        results: list[HolderResult] = []
        for v in values:
            holder_id = v["holder_id"]
            if holder_id in created:
                results.append(HolderResult(holder_id, "created"))
            elif holder_id not in found:
                results.append(HolderResult(holder_id, "document_taken"))
            else:
                results.append(
                    HolderResult(holder_id, "existing" if found[holder_id] == v["body_hash"] else "conflict")
                )
        ok = {r.holder_id for r in results if r.status in ("created", "existing")}
        await _open_default_subaccounts(tx, [h for h in holders if h.holder_id in ok])
    return results


_HASHES_SQL = "SELECT holder_id, body_hash FROM wallet_holders WHERE holder_id = ANY(:ids)"
_ACCOUNT_COLUMNS = {
    "id": "text",
    "holder_id": "text",
    "currency": "text",
    "kind": "text",
    "code": "text",
    "normal_balance": "text",
    "metadata": "jsonb",
    "debits_must_not_exceed_credits": "boolean",
    "idempotency_key": "text",
    "body_hash": "text",
}


async def _open_default_subaccounts(tx: Tx, holders: list[HolderImport]) -> None:
    """What `store.wallet.open_default_subaccounts` does per holder, for the whole batch: the same keys, bodies
    (the API's body hash) and `account.opened` events, so any later opener finds these accounts."""
    planned: list[tuple[str, SubaccountType, str, dict[str, Any]]] = []  # holder, type, currency, account values
    for holder in holders:
        types = PERSON_SUBACCOUNTS if holder.holder_type is HolderType.PERSON else MERCHANT_SUBACCOUNTS
        for subaccount in types:
            currency = POINTS_CURRENCY if subaccount is SubaccountType.POINTS else holder.currency
            entry = SUBACCOUNT_CHART[subaccount]
            metadata = {"wallet_subaccount": subaccount.value}
            key = (
                account_key(entry.kind, holder.holder_id, currency)
                if subaccount in CHART_SUBACCOUNTS
                else f"wallet:{holder.holder_id}:{subaccount.value}::{currency}"
            )
            body_hash = subaccount_body_hash(holder.holder_id, currency, subaccount)
            values = {
                "id": new_id("acc"),
                "holder_id": holder.holder_id,
                "currency": currency,
                "kind": entry.kind,
                "code": entry.code,
                "normal_balance": entry.normal_balance.value,
                "metadata": json.dumps(metadata),
                "debits_must_not_exceed_credits": entry.no_overdraft,
                "idempotency_key": key,
                "body_hash": body_hash,
            }
            planned.append((holder.holder_id, subaccount, currency, values))
    if not planned:
        return
    names = list(_ACCOUNT_COLUMNS)
    sql = f"""INSERT INTO accounts ({", ".join(names)})
              SELECT * FROM unnest({", ".join(f"CAST(:{n} AS {t}[])" for n, t in _ACCOUNT_COLUMNS.items())})
              ON CONFLICT (idempotency_key, livemode) DO NOTHING RETURNING *"""  # wallets are live money
    params = {n: [v[n] for *_, v in planned] for n in names}
    for row in (await tx.conn.execute(text(sql), params)).mappings():
        data = AccountResponse.of(account_from_row(row), row["created_at"]).model_dump(mode="json")
        tx.publish(topic=ACCOUNTS_TOPIC, type=ACCOUNT_OPENED, subject=str(row["id"]), data=data)
    keys = [v["idempotency_key"] for *_, v in planned]
    ids: dict[str, str] = dict((await tx.conn.execute(text(_IDS_BY_KEY_SQL), {"k": keys})).all())
    await tx.conn.execute(
        text(
            """INSERT INTO wallet_subaccounts (account_id, holder_id, subaccount_type, merchant_id, currency)
               SELECT a, h, t, '', c FROM unnest(CAST(:a AS text[]), CAST(:h AS text[]), CAST(:t AS text[]),
                                                 CAST(:c AS text[])) AS x(a, h, t, c)
               ON CONFLICT DO NOTHING"""
        ),
        {
            "a": [ids[v["idempotency_key"]] for *_, v in planned],
            "h": [h for h, *_ in planned],
            "t": [t.value for _, t, *_ in planned],
            "c": [c for _, _, c, _ in planned],
        },
    )


_IDS_BY_KEY_SQL = "SELECT idempotency_key, id FROM accounts WHERE idempotency_key = ANY(:k) AND livemode"


def subaccount_body_hash(holder_id: str, currency: str, subaccount: SubaccountType) -> str:
    """`store.wallet.chart_body(...).body_hash()` of a default sub-account, from a body built once per type and currency
    (building and dumping the API's model per account was a tenth of a bulk holder import); equal to it by
    test (tests/unit/test_imports.py): the same canonical JSON, only `holder_id` differs."""
    body = {**_subaccount_body(currency, subaccount), "holder_id": holder_id}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@functools.cache
def _subaccount_body(currency: str, subaccount: SubaccountType) -> dict[str, Any]:
    entry = SUBACCOUNT_CHART[subaccount]
    flags = AccountFlagsSchema(debits_must_not_exceed_credits=entry.no_overdraft, credits_must_not_exceed_debits=False)
    body = AccountCreateRequest.model_construct(
        holder_id="",
        currency=currency,
        kind=entry.kind,
        code=entry.code,
        credit_limit_minor=0,
        flags=flags,
        metadata={"wallet_subaccount": subaccount.value},
    )
    return body.model_dump(mode="json", exclude=NOT_HASHED)


async def suspense_account(tx: Tx, run_id: str, currency: str) -> str:
    return await wallet_store.shared_account(
        tx, holder_id=f"migration:{run_id}", entry=chart.MIGRATION_SUSPENSE, currency=currency
    )


async def post_control(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    run_id: str,
    currency: str,
    amount_minor: int,
    reverse: bool,
    credit: bool = False,
) -> Outcome:
    """The institution's confirmed total enters the run's suspense (or leaves it again on reversal).

    `credit`: what users owe on their credit lines, Dr suspense, Cr escrow_bank. In Juhe a credit line is lent
    from the escrow (a BNPL spend is Dr user_credit, Cr merchant_pending, settled from the escrow), so the
    institution holds the money balances minus what was lent: the escrow ends at Σ balances − Σ owed."""
    async with uow.begin() as tx:
        suspense = await suspense_account(tx, run_id, currency)
        if currency == POINTS_CURRENCY and not credit:
            counterpart = await wallet_store.shared_account(
                tx, holder_id=PLATFORM, entry=chart.POINTS_ISSUED, currency=currency
            )
        else:
            counterpart = await wallet_store.shared_account(
                tx, holder_id=PLATFORM, entry=chart.ESCROW_BANK, currency=currency, credits_bounded=True
            )
    postings = [dr(counterpart, amount_minor, currency), cr(suspense, amount_minor, currency)]
    if credit:  # owed, not held: out of the escrow into the suspense the credit openings fill
        postings = [_mirror(p) for p in postings]
    if reverse:
        postings = [_mirror(p) for p in postings]
    request = TransferRequest(
        source=MIGRATION_SOURCE,
        idempotency_key=control_key(run_id, currency, reverse=reverse, credit=credit),
        postings=tuple(postings),
        reference=run_id,
        metadata={"migration_run": run_id, "kind": "credit_control" if credit else "control"},
    )
    (outcome,) = await writer.submit(CreateTransfers((request,)))
    return outcome


async def post_openings(
    uow: UnitOfWork, writer: LedgerWriter, *, run_id: str, openings: list[OpeningImport]
) -> list[Outcome]:
    """One transfer per opening balance (Dr suspense, Cr sub-account), one writer command for the batch."""
    async with uow.begin() as tx:
        requests = []
        known = await _subaccounts(tx.conn, sorted({o.holder_id for o in openings}))
        suspenses: dict[str, str] = {}
        for o in openings:
            target = known.get((o.holder_id, o.subaccount.value, o.merchant_holder_id, o.currency))
            if target is None:  # a prepaid card at a merchant for the first time: opened here
                target = await wallet_store.open_subaccount(
                    tx, o.holder_id, o.subaccount, o.currency, o.merchant_holder_id
                )
            if o.currency not in suspenses:
                suspenses[o.currency] = await suspense_account(tx, run_id, o.currency)
            suspense = suspenses[o.currency]
            postings = (dr(suspense, o.amount_minor, o.currency), cr(target, o.amount_minor, o.currency))
            if o.subaccount is SubaccountType.CREDIT:  # the line first, then what is owed on it (a debit)
                limit = max(o.credit_limit_minor or 0, o.amount_minor)
                await wallet_store.set_credit_limit(tx.conn, target, limit)  # same value again on a replay
                postings = (dr(target, o.amount_minor, o.currency), cr(suspense, o.amount_minor, o.currency))
            requests.append(
                TransferRequest(
                    source=MIGRATION_SOURCE,
                    idempotency_key=opening_key(run_id, o.source_id),
                    postings=postings,
                    reference=o.source_id,
                    metadata={"migration_run": run_id, "kind": "opening"},
                )
            )
    return await writer.submit(CreateTransfers(tuple(requests))) if requests else []


async def _subaccounts(conn: AsyncConnection, holder_ids: list[str]) -> dict[tuple[str, str, str, str], str]:
    sql = """SELECT holder_id, subaccount_type, merchant_id, currency, account_id FROM wallet_subaccounts
              WHERE holder_id = ANY(:h)"""
    rows = (await conn.execute(text(sql), {"h": holder_ids})).all()
    return {(str(h), str(t), str(m), str(c)): str(a) for h, t, m, c, a in rows}


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
        postings = tuple(
            _mirror(Posting(e["account_id"], Direction(e["direction"]), e["amount_minor"], e["currency"]))
            for e in original["postings"]
        )
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
    debited = [p.account_id for r in requests for p in r.postings if p.direction is Direction.CREDIT]
    if debited:  # a credit line the run opened closes with its debt: no line is left to spend on
        async with uow.begin() as tx:
            await tx.conn.execute(
                text(_CLOSE_LINES_SQL), {"ids": debited, "k": SUBACCOUNT_CHART[SubaccountType.CREDIT].kind}
            )
    answer: list[Outcome | None] = [None] * len(source_ids)
    for position, outcome in zip(positions, outcomes, strict=True):
        answer[position] = outcome
    return answer


# Only where nothing is owed or held any more (a reversal that failed leaves its line as it was).
_CLOSE_LINES_SQL = """UPDATE accounts SET credit_limit_minor = 0, updated_at = now()
                       WHERE id = ANY(:ids) AND kind = :k AND credit_limit_minor <> 0
                         AND debits_posted + debits_pending - credits_posted <= 0"""


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
    rows = (await conn.execute(text(sql), {"h": f"migration:{run_id}", "k": chart.MIGRATION_SUSPENSE.kind})).mappings()
    return [
        {
            "account_id": r["id"],
            "currency": r["currency"],
            "debits_posted": int(r["debits_posted"]),
            "credits_posted": int(r["credits_posted"]),
            "balance_minor": int(r["credits_posted"]) - int(r["debits_posted"]),
        }
        for r in rows
    ]
