"""Big wallet store: holders, sub-accounts (each a ledger account), entitlements, operations, bills.

Money moves only through the ledger's batching writer (`LedgerWriter.submit`), so every wallet movement is an
ordinary ledger transfer with `source = "wallet"` and a business idempotency key. Daily and monthly limits
ride in the same transfer as memo postings on quota accounts (wallet/domain/entitlements.py): the engine
decides limit and balance together under the account locks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from services.ledger.domain import chart
from services.ledger.domain import errors as ledger_errors
from services.ledger.domain.chart import ChartAccount
from services.ledger.domain.engine import CreateTransfers, Outcome, PostPending, VoidPending
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import Posting, Transfer, TransferRequest
from services.ledger.events import WALLET_TOPIC
from services.ledger.events.accounts import AccountCreateRequest, AccountFlagsSchema
from services.ledger.events.postings import account_key
from services.ledger.store import accounts as account_store
from services.ledger.store import queries
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain import entitlements as ent
from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain.entitlements import Action, Entitlement, HolderType, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.domain.kyc import KycStatus, kyc_level
from services.ledger.wallet.domain.postings import (
    CHART_SUBACCOUNTS,
    MERCHANT_SUBACCOUNTS,
    PERSON_SUBACCOUNTS,
    POINTS_CURRENCY,
    SUBACCOUNT_CHART,
    cr,
    dr,
)
from services.ledger.wallet.events.wallet import event_for

WALLET_SOURCE = "wallet"
OPERATIONS_PAGE_MAX = 200


def body_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# --- holders ---------------------------------------------------------------------------------------------
async def insert_holder(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping | None:
    """None when `holder_id` exists (the caller compares bodies); HOLDER_EXISTS when the document is taken."""
    row = (
        (
            await conn.execute(
                text(
                    """INSERT INTO wallet_holders (holder_id, holder_type, name, document_number, phone, bank_card,
                          legal_person, settlement_account, body_hash)
                   VALUES (:holder_id, :holder_type, :name, :document_number, :phone, :bank_card,
                           :legal_person, :settlement_account, :body_hash)
                   ON CONFLICT DO NOTHING RETURNING *"""
                ),
                values,
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        return row
    existing = await get_holder(conn, values["holder_id"])
    if existing is None:
        raise WalletError(errors.HOLDER_EXISTS, "another holder was opened with this document number")
    return None


async def get_holder(conn: AsyncConnection, holder_id: str, *, for_update: bool = False) -> RowMapping | None:
    lock = " FOR UPDATE" if for_update else ""
    sql = f"SELECT * FROM wallet_holders WHERE holder_id = :h{lock}"
    return (await conn.execute(text(sql), {"h": holder_id})).mappings().first()


async def require_holder(conn: AsyncConnection, holder_id: str, *, for_update: bool = False) -> RowMapping:
    row = await get_holder(conn, holder_id, for_update=for_update)
    if row is None:
        raise WalletError(errors.HOLDER_NOT_FOUND, f"no wallet holder {holder_id}", holder_id=holder_id)
    return row


async def set_kyc(
    conn: AsyncConnection, holder_id: str, *, old: str, new: str, reason: str | None, request_id: str | None
) -> RowMapping | None:
    """Compare-and-set on the KYC status: two callbacks (or a callback and a resubmit) never both win."""
    sql = """UPDATE wallet_holders SET kyc_status = :new, kyc_reason = :reason, kyc_request_id = :rid,
                    updated_at = now()
              WHERE holder_id = :h AND kyc_status = :old RETURNING *"""
    params = {"h": holder_id, "old": old, "new": new, "reason": reason, "rid": request_id}
    return (await conn.execute(text(sql), params)).mappings().first()


async def holder_by_kyc_request(conn: AsyncConnection, request_id: str) -> RowMapping | None:
    sql = "SELECT * FROM wallet_holders WHERE kyc_request_id = :r FOR UPDATE"
    return (await conn.execute(text(sql), {"r": request_id})).mappings().first()


def level_of(holder: RowMapping) -> int:
    return kyc_level(KycStatus(holder["kyc_status"]), has_bank_card=bool(holder["bank_card"]))


# --- accounts --------------------------------------------------------------------------------------------
async def open_ledger_account(
    tx: Tx,
    *,
    key: str,
    holder_id: str,
    entry: ChartAccount,
    currency: str,
    credit_limit_minor: int = 0,
    credits_bounded: bool = False,
    metadata: dict[str, Any] | None = None,
    hashed_metadata: dict[str, Any] | None = None,
) -> str:
    """Idempotent by the account's opening key, which is its identity here: whoever opened it first (this
    wallet, the cashier, settlement) decided its body; concurrent openers all get the one row. `hashed_metadata`:
    the metadata of the body the key is bound to when it is not the row's own (a chart account's documented body,
    whatever the wallet notes on its row)."""
    row_metadata = metadata or {}
    body = chart_body(
        holder_id,
        currency,
        entry,
        credit_limit_minor,
        credits_bounded,
        row_metadata if hashed_metadata is None else hashed_metadata,
    )
    row, _ = await account_store.open_account(tx, body.to_account(metadata=row_metadata), key, body.body_hash())
    if row is None:  # bound to another body by its first opener: the key is the account's identity here
        row = await account_store.get_account_by_key(tx.conn, key)
        assert row is not None  # ON CONFLICT waited for the other opener's commit
    return str(row["id"])


def chart_body(
    holder_id: str,
    currency: str,
    entry: ChartAccount,
    credit_limit_minor: int,
    credits_bounded: bool,
    metadata: dict[str, Any],
) -> AccountCreateRequest:
    """The `POST /v1/accounts` body of a chart account opened by the wallet, named by its kind: its hash is the one
    the API stores for the same body, so the cashier's consumer (and any service) opening the account by its
    `chart:` key with the documented body finds this one instead of a conflict."""
    flags = AccountFlagsSchema(
        debits_must_not_exceed_credits=entry.no_overdraft, credits_must_not_exceed_debits=credits_bounded
    )
    # Constructed, not validated: points accounts are in `XXX`, which the public API does not open.
    return AccountCreateRequest.model_construct(
        holder_id=holder_id,
        currency=currency,
        kind=entry.kind,
        credit_limit_minor=credit_limit_minor,
        flags=flags,
        metadata=metadata,
    )


async def open_subaccount(
    tx: Tx, holder_id: str, subaccount: SubaccountType, currency: str, merchant_id: str = ""
) -> str:
    existing = await get_subaccount_id(tx.conn, holder_id, subaccount, currency, merchant_id)
    if existing is not None:
        return existing
    account_currency = POINTS_CURRENCY if subaccount is SubaccountType.POINTS else currency
    meta = {"wallet_subaccount": subaccount.value, **({"merchant_id": merchant_id} if merchant_id else {})}
    entry = SUBACCOUNT_CHART[subaccount]
    key = (
        account_key(entry.kind, holder_id, account_currency)
        if subaccount in CHART_SUBACCOUNTS
        else f"wallet:{holder_id}:{subaccount.value}:{merchant_id}:{account_currency}"
    )
    # A chart sub-account's key is bound to the chart's documented body (`metadata: {}`), the one the cashier's
    # wallet connector and the ledger's consumer send: they find this account, never a 409 for another body.
    account_id = await open_ledger_account(
        tx,
        key=key,
        holder_id=holder_id,
        entry=entry,
        currency=account_currency,
        metadata=meta,
        hashed_metadata={} if subaccount in CHART_SUBACCOUNTS else None,
    )
    await tx.conn.execute(
        text(
            """INSERT INTO wallet_subaccounts (account_id, holder_id, subaccount_type, merchant_id, currency)
               VALUES (:a, :h, :t, :m, :c) ON CONFLICT DO NOTHING"""
        ),
        {"a": account_id, "h": holder_id, "t": subaccount.value, "m": merchant_id, "c": account_currency},
    )
    return account_id


async def open_default_subaccounts(tx: Tx, holder_id: str, holder_type: HolderType, currency: str) -> None:
    types = PERSON_SUBACCOUNTS if holder_type is HolderType.PERSON else MERCHANT_SUBACCOUNTS
    for subaccount in types:
        await open_subaccount(tx, holder_id, subaccount, currency)


async def get_subaccount_id(
    conn: AsyncConnection, holder_id: str, subaccount: SubaccountType, currency: str, merchant_id: str = ""
) -> str | None:
    account_currency = POINTS_CURRENCY if subaccount is SubaccountType.POINTS else currency
    sql = """SELECT account_id FROM wallet_subaccounts
              WHERE holder_id = :h AND subaccount_type = :t AND merchant_id = :m AND currency = :c"""
    params = {"h": holder_id, "t": subaccount.value, "m": merchant_id, "c": account_currency}
    value = (await conn.execute(text(sql), params)).scalar_one_or_none()
    return None if value is None else str(value)


async def list_subaccounts(conn: AsyncConnection, holder_id: str) -> list[RowMapping]:
    sql = """SELECT s.subaccount_type, s.merchant_id, a.*
               FROM wallet_subaccounts s JOIN accounts a ON a.id = s.account_id
              WHERE s.holder_id = :h ORDER BY s.created_at, s.account_id"""
    return list((await conn.execute(text(sql), {"h": holder_id})).mappings().all())


async def subaccount_row(conn: AsyncConnection, account_id: str) -> RowMapping | None:
    sql = """SELECT s.subaccount_type, s.merchant_id, s.holder_id AS wallet_holder_id, a.*
               FROM wallet_subaccounts s JOIN accounts a ON a.id = s.account_id WHERE s.account_id = :a"""
    return (await conn.execute(text(sql), {"a": account_id})).mappings().first()


async def shared_account(
    tx: Tx,
    *,
    holder_id: str,
    entry: ChartAccount,
    currency: str,
    channel: str | None = None,
    credits_bounded: bool = False,
) -> str:
    """A platform or merchant account the wallet posts against (channel clearing, escrow, fee income,
    merchant_pending…): the chart account (`chart:` key, shared with the cashier and the ledger's consumer),
    else one already open for (holder, kind, currency[, channel]), else opened here with the chart key. Always in
    the live book: wallets are live money (docs/ledger.md "Books"), and the test book's account of the same kind
    (opened for test payments) would make the engine refuse the transfer (`books_mixed`)."""
    key = account_key(entry.kind, holder_id, currency, channel)
    by_key = await account_store.get_account_by_key(tx.conn, key)
    if by_key is not None:
        return str(by_key["id"])
    sql = """SELECT id FROM accounts WHERE holder_id = :h AND kind = :k AND currency = :c AND status <> 'closed'
                AND livemode AND (CAST(:ch AS text) IS NULL OR metadata->>'channel' = :ch) ORDER BY id LIMIT 1"""
    params = {"h": holder_id, "k": entry.kind, "c": currency, "ch": channel}
    found = (await tx.conn.execute(text(sql), params)).scalar_one_or_none()
    if found is not None:
        return str(found)
    return await open_ledger_account(
        tx,
        key=key,
        holder_id=holder_id,
        entry=entry,
        currency=currency,
        credits_bounded=credits_bounded,
        metadata={"channel": channel} if channel else {},
    )


async def set_credit_limit(conn: AsyncConnection, account_id: str, limit_minor: int) -> RowMapping | None:
    """Under the row lock the writer also takes; refused (None) below what is already used or held."""
    sql = """UPDATE accounts SET credit_limit_minor = :lim, updated_at = now()
              WHERE id = :a AND debits_posted + debits_pending - credits_posted <= :lim RETURNING *"""
    return (await conn.execute(text(sql), {"a": account_id, "lim": limit_minor})).mappings().first()


# --- entitlements ----------------------------------------------------------------------------------------
EntitlementKey = tuple[HolderType, int, SubaccountType, Action]


async def entitlement_overrides(conn: AsyncConnection) -> dict[EntitlementKey, Entitlement]:
    rows = (await conn.execute(text("SELECT * FROM wallet_entitlements"))).mappings().all()
    return {
        (HolderType(r["holder_type"]), r["kyc_level"], SubaccountType(r["subaccount_type"]), Action(r["action"])): (
            Entitlement(r["allowed"], r["single_limit_minor"], r["daily_limit_minor"], r["monthly_limit_minor"])
        )
        for r in rows
    }


async def change_entitlement(
    tx: Tx, key: EntitlementKey, changes: dict[str, Any], *, actor: str, reason: str
) -> tuple[Entitlement, Entitlement]:
    """An audited instruction: the override row and its audit row (before/after, who, why) in one commit."""
    holder_type, level, subaccount, action = key
    await tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('wallet_entitlements'))"))
    before = ent.effective(await entitlement_overrides(tx.conn), holder_type, level, subaccount, action)
    after = ent.changed(before, changes)
    params = {"ht": holder_type.value, "lv": level, "st": subaccount.value, "ac": action.value, **after.as_dict()}
    await tx.conn.execute(
        text(
            """INSERT INTO wallet_entitlements (holder_type, kyc_level, subaccount_type, action, allowed,
                          single_limit_minor, daily_limit_minor, monthly_limit_minor)
               VALUES (:ht, :lv, :st, :ac, :allowed, :single_limit_minor, :daily_limit_minor, :monthly_limit_minor)
               ON CONFLICT (holder_type, kyc_level, subaccount_type, action) DO UPDATE
                  SET allowed = EXCLUDED.allowed, single_limit_minor = EXCLUDED.single_limit_minor,
                      daily_limit_minor = EXCLUDED.daily_limit_minor,
                      monthly_limit_minor = EXCLUDED.monthly_limit_minor, updated_at = now()"""
        ),
        params,
    )
    await tx.conn.execute(
        text(
            """INSERT INTO wallet_entitlement_changes (id, holder_type, kyc_level, subaccount_type, action,
                          before, after, actor, reason)
               VALUES (:id, :ht, :lv, :st, :ac, CAST(:b AS jsonb), CAST(:a AS jsonb), :actor, :reason)"""
        ),
        {
            **params,
            "id": new_id("ent"),
            "b": json.dumps(before.as_dict()),
            "a": json.dumps(after.as_dict()),
            "actor": actor,
            "reason": reason,
        },
    )
    return before, after


async def entitlement_changes(conn: AsyncConnection, limit: int, *, before_id: str | None = None) -> list[RowMapping]:
    """Newest first (the ids are UUIDv7, time-ordered); `before_id`, the last id of the previous page, pages
    back in time."""
    sql = (
        "SELECT * FROM wallet_entitlement_changes"
        " WHERE (CAST(:before AS text) IS NULL OR id < :before) ORDER BY id DESC LIMIT :n"
    )
    return list((await conn.execute(text(sql), {"n": limit, "before": before_id})).mappings().all())


async def quota_account(
    tx: Tx, *, holder_id: str, subaccount: SubaccountType, action: Action, window: ent.QuotaWindow, currency: str
) -> str:
    """The memo account of one limit window, its `credit_limit_minor` set to the limit in force now (a
    change of entitlements or KYC level applies at once; never below what the window already used, so a
    lowered limit means "nothing more today" and the account stays within its flag)."""
    key = quota_key(holder_id, subaccount, action, window, currency)
    account_id = await open_ledger_account(
        tx,
        key=key,
        holder_id=holder_id,
        entry=chart.ENTITLEMENT_QUOTA,
        currency=currency,
        credit_limit_minor=window.limit_minor,
        metadata={"subaccount": subaccount.value, "action": action.value, "window": window.label},
    )
    await tx.conn.execute(
        text(
            """UPDATE accounts SET credit_limit_minor = GREATEST(:lim, debits_posted + debits_pending - credits_posted)
                WHERE id = :a
                  AND credit_limit_minor <> GREATEST(:lim, debits_posted + debits_pending - credits_posted)"""
        ),
        {"a": account_id, "lim": window.limit_minor},
    )
    return account_id


def quota_key(
    holder_id: str, subaccount: SubaccountType, action: Action, window: ent.QuotaWindow, currency: str
) -> str:
    return f"wallet:quota:{holder_id}:{subaccount.value}:{action.value}:{window.period}:{window.label}:{currency}"


async def quota_used_minor(
    conn: AsyncConnection,
    *,
    holder_id: str,
    subaccount: SubaccountType,
    action: Action,
    window: ent.QuotaWindow,
    currency: str,
) -> int:
    """How much of a window is used (posted and held); 0 when nothing was done in it yet."""
    row = await account_store.get_account_by_key(conn, quota_key(holder_id, subaccount, action, window, currency))
    if row is None:
        return 0
    return int(row["debits_posted"] + row["debits_pending"] - row["credits_posted"])


async def precheck(
    conn: AsyncConnection,
    holder_id: str,
    checks: Sequence[tuple[SubaccountType, Action]],
    amount_minor: int,
    *,
    source_account_id: str | None = None,
    source_amount_minor: int | None = None,
) -> RowMapping:
    """Refusals that need no account opened: entitlement and single limit, then the source's available
    balance. Only an early answer (so a refused request creates nothing): the engine decides again, exactly,
    under the locks."""
    holder = await require_holder(conn, holder_id)
    holder_type, level = HolderType(holder["holder_type"]), level_of(holder)
    overrides = await entitlement_overrides(conn) if checks else {}
    for subaccount, action in checks:
        rule = ent.effective(overrides, holder_type, level, subaccount, action)
        ent.check(rule, amount_minor, what=f"{action.value} on {subaccount.value}")
    if source_account_id is not None:
        available = await available_minor(conn, source_account_id)
        needed = source_amount_minor if source_amount_minor is not None else amount_minor
        if available < needed:
            raise LedgerError(
                ledger_errors.INSUFFICIENT_FUNDS,
                f"account {source_account_id}: available {available} < {needed}",
                account_id=source_account_id,
            )
    return holder


async def available_minor(conn: AsyncConnection, account_id: str) -> int:
    """What a credit-normal sub-account can still pay out: posted credits (+ its credit line) − posted and held
    debits. A read, not a decision: the engine decides again under the account lock."""
    sql = """SELECT credits_posted + credit_limit_minor - debits_posted - debits_pending FROM accounts
              WHERE id = :a"""
    return int((await conn.execute(text(sql), {"a": account_id})).scalar_one())


# --- operations ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Movement:
    """One wallet business event: its entitlement checks and the postings of its one transfer."""

    holder_id: str
    kind: str  # top_up, withdrawal, payment, prepaid_purchase, points_grant, points_exchange, repayment
    idempotency_key: str
    amount_minor: int
    currency: str
    postings: Sequence[Posting]
    checks: Sequence[tuple[SubaccountType, Action]] = ()
    pending: bool = False
    timeout_seconds: int | None = None
    reference: str | None = None
    details: dict[str, Any] | None = None
    transfer_metadata: dict[str, Any] | None = None  # more than kind and holder, e.g. to adopt an orphan


async def get_operation(conn: AsyncConnection, operation_id: str) -> RowMapping | None:
    sql = "SELECT * FROM wallet_operations WHERE id = :i"
    return (await conn.execute(text(sql), {"i": operation_id})).mappings().first()


async def operation_by_key(conn: AsyncConnection, kind: str, key: str) -> RowMapping | None:
    sql = "SELECT * FROM wallet_operations WHERE kind = :k AND idempotency_key = :key"
    return (await conn.execute(text(sql), {"k": kind, "key": key})).mappings().first()


def publish_operation_event(tx: Tx, operation: RowMapping, status: str) -> None:
    """The `ledger.wallet` event of this state, in the caller's transaction (the one that recorded it)."""
    event = event_for(operation, status)
    if event is not None:
        tx.publish(topic=WALLET_TOPIC, type=event[0], subject=str(operation["id"]), data=event[1])


async def change_operation_status(tx: Tx, operation_id: str, *, old: str, new: str) -> RowMapping | None:
    """Compare-and-set of the operation's status and its event, in one transaction: of any number of
    callers (the route after `post`, a repeated `post`, the reconciler after an expiry) exactly one wins
    and publishes; the others get None."""
    sql = """UPDATE wallet_operations SET status = :new, updated_at = now() WHERE id = :i AND status = :old
             RETURNING *"""
    row = (await tx.conn.execute(text(sql), {"i": operation_id, "old": old, "new": new})).mappings().first()
    if row is not None:
        publish_operation_event(tx, row, new)
    return row


def _replay_or_conflict(existing: RowMapping, m: Movement) -> RowMapping:
    same = (existing["holder_id"], existing["amount_minor"], existing["currency"]) == (
        m.holder_id,
        m.amount_minor,
        m.currency,
    )
    if not same or existing["details"].get("body_hash") != body_hash(_movement_body(m)):
        raise Problem(IDEMPOTENCY_KEY_REUSED, f"{m.kind} {m.idempotency_key} was used with another body")
    return existing


def _movement_body(m: Movement) -> dict[str, Any]:
    return {"details": m.details or {}, "pending": m.pending, "reference": m.reference}


async def execute(uow: UnitOfWork, writer: LedgerWriter, m: Movement, *, now: datetime) -> tuple[RowMapping, bool]:
    """Checks entitlements, writes the one transfer through the writer, records the operation.

    Returns `(operation, replayed)`. The same business key with the same body answers the first operation
    (nothing moves twice: the transfer's idempotency key is the business key too); another body → 409.
    """
    async with uow.begin() as tx:
        existing = await operation_by_key(tx.conn, m.kind, m.idempotency_key)
        if existing is not None:
            return _replay_or_conflict(existing, m), True
        holder = await require_holder(tx.conn, m.holder_id)
        holder_type, level = HolderType(holder["holder_type"]), level_of(holder)
        overrides = await entitlement_overrides(tx.conn) if m.checks else {}
        memo: list[Posting] = []
        quota_ids: dict[str, tuple[str, int]] = {}
        for subaccount, action in m.checks:
            rule = ent.effective(overrides, holder_type, level, subaccount, action)
            ent.check(rule, m.amount_minor, what=f"{action.value} on {subaccount.value}")
            for window in ent.windows(rule, now):
                qid = await quota_account(
                    tx,
                    holder_id=m.holder_id,
                    subaccount=subaccount,
                    action=action,
                    window=window,
                    currency=m.currency,
                )
                usage = await shared_account(
                    tx, holder_id="platform", entry=chart.ENTITLEMENT_QUOTA_USAGE, currency=m.currency
                )
                memo += [dr(qid, m.amount_minor, m.currency), cr(usage, m.amount_minor, m.currency)]
                quota_ids[qid] = (window.period, window.limit_minor)
    request = TransferRequest(
        source=WALLET_SOURCE,
        idempotency_key=f"{m.kind}:{m.idempotency_key}",
        postings=(*m.postings, *memo),
        pending=m.pending,
        timeout_seconds=m.timeout_seconds,
        reference=m.reference,
        metadata={"wallet_operation": m.kind, "holder_id": m.holder_id, **(m.transfer_metadata or {})},
    )
    request.validate()
    [outcome] = await writer.submit(CreateTransfers((request,)))
    transfer = _transfer_or_raise(outcome, quota_ids)
    async with uow.begin() as tx:
        row = await record_operation(tx, m, transfer_id=transfer.id, status=transfer.status.value)
        if row is None:  # a concurrent duplicate (or the orphan reconciler) recorded it first, and published
            existing = await operation_by_key(tx.conn, m.kind, m.idempotency_key)
            assert existing is not None
            return _replay_or_conflict(existing, m), True
    return row, False


async def record_operation(tx: Tx, m: Movement, *, transfer_id: str, status: str) -> RowMapping | None:
    """Inserts the operation of a written transfer and publishes its event in the same transaction; None when
    the operation was already recorded (only the insert that wins publishes)."""
    details = {**(m.details or {}), "body_hash": body_hash(_movement_body(m))}
    row = (
        (
            await tx.conn.execute(
                text(
                    """INSERT INTO wallet_operations (id, holder_id, kind, idempotency_key, transfer_id, status,
                              amount_minor, currency, details)
                   VALUES (:id, :h, :k, :key, :t, :s, :amt, :c, CAST(:d AS jsonb))
                   ON CONFLICT (kind, idempotency_key) DO NOTHING RETURNING *"""
                ),
                {
                    "id": new_id("wop"),
                    "h": m.holder_id,
                    "k": m.kind,
                    "key": m.idempotency_key,
                    "t": transfer_id,
                    "s": status,
                    "amt": m.amount_minor,
                    "c": m.currency,
                    "d": json.dumps(details),
                },
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        publish_operation_event(tx, row, row["status"])
    return row


async def orphan_withdrawal_holds(conn: AsyncConnection, *, older_than_seconds: float, limit: int) -> list[RowMapping]:
    """Withdrawal holds written by the writer whose operation was never recorded (the request died between
    the two commits): pending, older than a request can take, no operation. Read through the pending-timeout
    index (withdrawal holds always have a timeout)."""
    sql = """SELECT t.id, t.idempotency_key, t.status, t.metadata FROM transfers t
              WHERE t.status = 'pending' AND t.timeout_at IS NOT NULL AND t.source = :src
                AND t.metadata->>'wallet_operation' = 'withdrawal' AND t.metadata ? 'amount_minor'
                AND t.created_at < clock_timestamp() - make_interval(secs => :age)
                AND NOT EXISTS (SELECT 1 FROM wallet_operations o WHERE o.kind = 'withdrawal'
                                   AND o.idempotency_key = substr(t.idempotency_key, length('withdrawal:') + 1))
              ORDER BY t.timeout_at LIMIT :n"""
    params = {"src": WALLET_SOURCE, "age": older_than_seconds, "n": limit}
    return list((await conn.execute(text(sql), params)).mappings().all())


def _transfer_or_raise(outcome: Outcome, quota_ids: dict[str, tuple[str, int]]) -> Transfer:
    error = outcome.error
    if error is not None:
        account_id = error.extensions.get("account_id")
        if error.spec is ledger_errors.INSUFFICIENT_FUNDS and account_id in quota_ids:
            period, limit_minor = quota_ids[account_id]
            raise WalletError(
                errors.LIMIT_EXCEEDED,
                f"the {period}ly limit of {limit_minor} would be exceeded",
                limit="daily" if period == "day" else "monthly",
                limit_minor=limit_minor,
            )
        raise error
    assert outcome.transfer is not None
    return outcome.transfer


async def finish_hold(
    uow: UnitOfWork, writer: LedgerWriter, operation_id: str, *, post: bool
) -> tuple[RowMapping, Transfer]:
    """Post or void a pending operation's hold (a withdrawal after the payout outcome). Repeats are harmless."""
    async with uow.read() as conn:
        op = await get_operation(conn, operation_id)
    if op is None:
        raise WalletError(errors.OPERATION_NOT_FOUND, f"no wallet operation {operation_id}")
    command = PostPending(op["transfer_id"]) if post else VoidPending(op["transfer_id"])
    [outcome] = await writer.submit(command)
    error = outcome.error
    if error is not None and error.spec is ledger_errors.TRANSFER_NOT_PENDING:
        raise WalletError(errors.OPERATION_STATE_INVALID, f"{operation_id} holds nothing") from error
    if error is not None and not (error.spec is ledger_errors.PENDING_TRANSFER_EXPIRED and not post):
        await sync_operation(uow, operation_id)  # e.g. the hold ran out: record it (and tell settlement)
        raise error
    # Posted or voided now or before (a repeat replays), or a void of a hold that had expired (released
    # all the same): record the transfer's status; the caller that wins the compare-and-set publishes.
    row = await sync_operation(uow, operation_id)
    async with uow.read() as conn:
        transfer = await queries.get_transfer(conn, op["transfer_id"])
    assert row is not None and transfer is not None
    return row, transfer


async def sync_operation(uow: UnitOfWork, operation_id: str) -> RowMapping | None:
    """Brings a pending operation's status to its transfer's (posted, voided, expired) with its event.

    Called after `post`/`void` and by the worker's reconciler, so a crash between the writer's commit and
    this one, or a hold that expired, still ends with the status recorded and the event published once."""
    async with uow.begin() as tx:
        sql = """SELECT o.status, t.status AS transfer_status FROM wallet_operations o
                   JOIN transfers t ON t.id = o.transfer_id WHERE o.id = :i"""
        found = (await tx.conn.execute(text(sql), {"i": operation_id})).mappings().first()
        if found is not None and found["status"] == "pending" and found["transfer_status"] != "pending":
            await change_operation_status(tx, operation_id, old="pending", new=found["transfer_status"])
        return await get_operation(tx.conn, operation_id)


async def unsynced_operations(conn: AsyncConnection, limit: int) -> list[str]:
    """Pending operations whose transfer is no longer pending (expired holds, a crash after `post`)."""
    sql = """SELECT o.id FROM wallet_operations o JOIN transfers t ON t.id = o.transfer_id
              WHERE o.status = 'pending' AND t.status <> 'pending' ORDER BY o.id LIMIT :n"""
    return [str(r) for r in (await conn.execute(text(sql), {"n": limit})).scalars().all()]


async def list_operations(
    conn: AsyncConnection, holder_id: str, *, after_id: str | None, limit: int
) -> list[RowMapping]:
    sql = """SELECT o.*, t.status AS transfer_status FROM wallet_operations o JOIN transfers t ON t.id = o.transfer_id
              WHERE o.holder_id = :h AND (CAST(:after AS text) IS NULL OR o.id < :after)
              ORDER BY o.id DESC LIMIT :n"""
    params = {"h": holder_id, "after": after_id, "n": min(limit, OPERATIONS_PAGE_MAX)}
    return list((await conn.execute(text(sql), params)).mappings().all())


# --- history ---------------------------------------------------------------------------------------------
async def history(
    conn: AsyncConnection, account_ids: Sequence[str], *, before_id: int | None, limit: int
) -> list[RowMapping]:
    """Entries of the given sub-accounts, newest first (entry ids grow with time per account)."""
    sql = """SELECT e.id, e.account_id, e.transfer_id, e.kind, e.direction, e.posted_delta_minor,
                    e.pending_delta_minor, e.currency, e.created_at, t.reference,
                    t.metadata->>'wallet_operation' AS operation
               FROM entries e JOIN transfers t ON t.id = e.transfer_id
              WHERE e.account_id = ANY(:ids) AND (CAST(:before AS bigint) IS NULL OR e.id < :before)
              ORDER BY e.id DESC LIMIT :n"""
    params = {"ids": list(account_ids), "before": before_id, "n": limit}
    return list((await conn.execute(text(sql), params)).mappings().all())


async def accounts_of_kinds(conn: AsyncConnection, holder_id: str, kinds: Sequence[str]) -> list[RowMapping]:
    sql = "SELECT * FROM accounts WHERE holder_id = :h AND kind = ANY(:k) ORDER BY id"
    return list((await conn.execute(text(sql), {"h": holder_id, "k": list(kinds)})).mappings().all())


# --- bills (BNPL) ----------------------------------------------------------------------------------------
async def insert_bill(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping | None:
    sql = """INSERT INTO wallet_bills (id, holder_id, currency, amount_due_minor, period, due_at)
             VALUES (:id, :h, :c, :amt, :p, :due) ON CONFLICT (holder_id, currency, period) DO NOTHING RETURNING *"""
    return (await conn.execute(text(sql), values)).mappings().first()


async def bill_repayable_account(tx: Tx, bill: RowMapping) -> str:
    """The bill's memo account (9103): may go down to −(amount due), so repayments never exceed the bill."""
    return await open_ledger_account(
        tx,
        key=f"wallet:bill:{bill['id']}",
        holder_id=bill["holder_id"],
        entry=chart.BILL_REPAYABLE,
        currency=bill["currency"],
        credit_limit_minor=bill["amount_due_minor"],
        metadata={"bill_id": bill["id"]},
    )


async def get_bill(conn: AsyncConnection, bill_id: str, *, for_update: bool = False) -> RowMapping | None:
    lock = " FOR UPDATE" if for_update else ""
    return (
        (await conn.execute(text(f"SELECT * FROM wallet_bills WHERE id = :i{lock}"), {"i": bill_id})).mappings().first()
    )


async def bill_by_period(conn: AsyncConnection, holder_id: str, currency: str, period: str) -> RowMapping | None:
    sql = "SELECT * FROM wallet_bills WHERE holder_id = :h AND currency = :c AND period = :p"
    return (await conn.execute(text(sql), {"h": holder_id, "c": currency, "p": period})).mappings().first()


async def open_bills(conn: AsyncConnection, holder_id: str) -> list[RowMapping]:
    sql = "SELECT * FROM wallet_bills WHERE holder_id = :h ORDER BY id DESC LIMIT 24"
    return list((await conn.execute(text(sql), {"h": holder_id})).mappings().all())


async def repaid_minor(conn: AsyncConnection, bill_id: str) -> int:
    """Repayments are operations (idempotent with their transfer), so a bill's repaid sum is derived."""
    sql = """SELECT COALESCE(sum(amount_minor), 0) FROM wallet_operations
              WHERE kind = 'repayment' AND details->>'bill_id' = :i AND status = 'posted'"""
    return int((await conn.execute(text(sql), {"i": bill_id})).scalar_one())
