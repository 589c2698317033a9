"""Top-up bonus lots (充值送, docs/ledger.md §3.11): one 9106 memo account per granted bonus, beside the pool.

The bonus sub-account (2308) is one pool, so on its own it cannot say whose bonus a payment spent: a revocation
or an expiry would take back "up to that bonus" from whatever is left, and a refund of a payment that spent a
revoked bonus would give it back all the same. Each grant therefore also credits its own lot (9106
`wallet_bonus_lot`, holder = the user, no overdraft, metadata `payment_id` and `expires_at`), and every
movement of the pool moves the lots it concerns in the same transfer (postings.bonus_lot_memo): the pool is
always the sum of its lots, the engine refuses a lot that would go below zero, and:

- spending takes the earliest-expiring live lot first (no expiry last, then the oldest grant;
  libs/common/bonus_lots.py, the one rule the cashier's wallet connector follows too);
- a revocation or an expiry **ends** the lot (metadata `ended` = the operation kind, so no payment spends it
  and no refund gives back to it), takes back what is left of that lot only (Dr 2308 + lot, Cr 5201 + 9107)
  and closes it (the engine then refuses any credit to it: a refund that raced the end reads it again and
  gives that part back to the platform). A lot that cannot close yet (a payment's hold still pending on it,
  or a refund's credit that landed between the take-back and the close) is finished by the worker's wallet
  round (`finish_ended_lots`): whatever comes back to an ended lot returns to 5201, never to the holder.

Grants from before lots have no lot: that part of the pool ("unlotted", pool − Σ open lots) is spent after the
lots and taken back as before, up to that unlotted rest (min(bonus, pool − Σ open lots))."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from services.ledger.domain import chart
from services.ledger.domain import errors as ledger_errors
from services.ledger.domain.errors import LedgerError
from services.ledger.events import ACCOUNT_CLOSED, ACCOUNTS_TOPIC
from services.ledger.events.accounts import AccountResponse
from services.ledger.store import accounts as account_store
from services.ledger.store.codec import account_from_row
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain import postings as p
from services.ledger.wallet.domain.entitlements import SubaccountType
from services.ledger.wallet.store import wallet as store

PLATFORM = "platform"
FINISH_ATTEMPTS = 3  # a spend, a refund or a void between reading a lot and moving it: read again
_AVAILABLE = "credits_posted - debits_posted - debits_pending"


def lot_key(holder_id: str, currency: str, payment_id: str) -> str:
    """The lot's opening key: one lot per granted top-up (its payment id) and currency."""
    return f"wallet:{holder_id}:bonus_lot:{payment_id}:{currency}"


async def open_lot(tx: Tx, *, holder_id: str, currency: str, payment_id: str, expires_at: str | None) -> str:
    return await store.open_ledger_account(
        tx,
        key=lot_key(holder_id, currency, payment_id),
        holder_id=holder_id,
        entry=chart.WALLET_BONUS_LOT,
        currency=currency,
        metadata={"payment_id": payment_id, "expires_at": expires_at},
    )


async def lot_usage(tx: Tx, currency: str) -> str:
    return await store.shared_account(tx, holder_id=PLATFORM, entry=chart.WALLET_BONUS_LOT_USAGE, currency=currency)


async def get_lot(conn: AsyncConnection, holder_id: str, currency: str, payment_id: str) -> RowMapping | None:
    return await account_store.get_account_by_key(conn, lot_key(holder_id, currency, payment_id))


async def open_lots(conn: AsyncConnection, holder_id: str, currency: str) -> list[RowMapping]:
    """The holder's lots not closed yet, ended ones included (what is left in them is not the holder's to spend,
    nor unlotted): the input of libs.common.bonus_lots.spend_plan."""
    sql = f"""SELECT id, metadata, status, {_AVAILABLE} AS available FROM accounts
               WHERE holder_id = :h AND kind = :k AND currency = :c AND status <> 'closed' ORDER BY id"""
    params = {"h": holder_id, "k": chart.WALLET_BONUS_LOT.kind, "c": currency}
    return list((await conn.execute(text(sql), params)).mappings().all())


async def end_lot(tx: Tx, lot_id: str, kind: str) -> None:
    """Marks the lot ended by a revocation or an expiry (the first one wins; a bonus gets only one of them)."""
    sql = """UPDATE accounts SET metadata = metadata || jsonb_build_object('ended', CAST(:k AS text)),
                    updated_at = now()
              WHERE id = :a AND NOT (metadata ? 'ended')"""
    await tx.conn.execute(text(sql), {"a": lot_id, "k": kind})


async def finish_lot(
    uow: UnitOfWork, writer: LedgerWriter, lot_id: str, *, details: dict[str, Any], now: datetime
) -> bool:
    """Takes back what is left of an ended lot (Dr 2308 + lot; Cr 5201 + 9107) and closes it. Returns whether it
    is closed. Idempotent: the first take-back is keyed by the grant's payment id, any later one (money came back
    to the lot after it) by the lot's counters, which every take-back moves on."""
    for _ in range(FINISH_ATTEMPTS):
        async with uow.read() as conn:
            lot = await account_store.get_account(conn, lot_id)
        assert lot is not None
        meta = lot["metadata"]
        if lot["status"] == "closed":
            return True
        kind, payment_id = str(meta["ended"]), str(meta["payment_id"])
        left = int(lot["credits_posted"]) - int(lot["debits_posted"]) - int(lot["debits_pending"])
        if left > 0:
            async with uow.begin() as tx:
                first = await store.operation_by_key(tx.conn, kind, payment_id) is None
                pool = await store.open_subaccount(
                    tx, str(lot["holder_id"]), SubaccountType.BONUS, str(lot["currency"])
                )
                expense = await store.shared_account(
                    tx, holder_id=PLATFORM, entry=chart.MARKETING_EXPENSE, currency=str(lot["currency"])
                )
                usage = await lot_usage(tx, str(lot["currency"]))
            currency = str(lot["currency"])
            key = payment_id if first else f"{payment_id}:{lot['credits_posted']}:{lot['debits_posted']}"
            postings = [
                p.dr(pool, left, currency),
                p.cr(expense, left, currency),
                *p.bonus_lot_memo(lots=[(lot_id, left)], usage=usage, currency=currency, debit=True),
            ]
            try:
                await store.execute(
                    uow,
                    writer,
                    store.Movement(
                        str(lot["holder_id"]),
                        kind,
                        key,
                        left,
                        currency,
                        postings,
                        [],
                        reference=payment_id,
                        details={"account_id": pool, "lot_account_id": lot_id, **details},
                    ),
                    now=now,
                )
            except Problem as exc:  # LedgerError is one
                # A payment took part of it meanwhile, or another replica's round took it back first under the
                # same key with what it read then: read again.
                if exc.spec.code not in (ledger_errors.INSUFFICIENT_FUNDS.code, IDEMPOTENCY_KEY_REUSED.code):
                    raise
                continue
        if await _close(uow, lot_id):
            return True
    return False


async def _close(uow: UnitOfWork, lot_id: str) -> bool:
    """Closes an empty lot under its row lock (the writer takes the same lock, so nothing lands in between);
    False when it still holds something (a pending hold, a credit that arrived after the take-back)."""
    async with uow.begin() as tx:
        row = await account_store.get_account(tx.conn, lot_id, for_update=True)
        assert row is not None
        account = account_from_row(row)
        try:
            if not account.close():
                return True
        except LedgerError as exc:
            if exc.spec.code != ledger_errors.ACCOUNT_NOT_EMPTY.code:
                raise
            return False
        updated = await account_store.set_account_status(tx.conn, lot_id, old=row["status"], new="closed")
        assert updated is not None  # we hold the row lock
        data = AccountResponse.of(account_from_row(updated), updated["created_at"]).model_dump(mode="json")
        tx.publish(topic=ACCOUNTS_TOPIC, type=ACCOUNT_CLOSED, subject=lot_id, data=data)
    return True


async def finish_ended_lots(uow: UnitOfWork, writer: LedgerWriter, *, limit: int, now: datetime) -> int:
    """The worker's round: ended lots not closed yet (a hold was pending when their bonus ended, or a refund's
    credit landed after the take-back) are taken back and closed. Returns how many were found."""
    sql = """SELECT id FROM accounts WHERE kind = :k AND status <> 'closed' AND metadata ? 'ended'
              ORDER BY id LIMIT :n"""
    async with uow.read() as conn:
        ids = [
            str(i) for i in (await conn.execute(text(sql), {"k": chart.WALLET_BONUS_LOT.kind, "n": limit})).scalars()
        ]
    for lot_id in ids:
        await finish_lot(uow, writer, lot_id, details={}, now=now)  # not closed: a hold still pending, next round
    return len(ids)
