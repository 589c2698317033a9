"""Top-up orders (docs/contracts.md §4, wallet top-up): what the ledger asked the cashier to collect for a holder's
wallet.

The order is recorded before the cashier is called, keyed by (holder, idempotency key), and its
`merchant_order_no` is derived from that key, so a retry after any failure sends the cashier the same
request and gets the same payment back (the cashier replays an identical merchant order). Nothing is
credited here: the wallet is credited by the ledger's consumer of `payment.succeeded` (§3.7).

A refund of a credited top-up (docs/marketing.md "Top-up refunds") is a hold on the holder's balance that the
cashier places before it asks the channel (`hold_refund`), posted on `refund.succeeded` and voided on
`refund.failed` (`finish_refund`): the holder cannot spend the money while the channel returns it, and a refund
can never take more than the balance still holds (the engine's no-overdraft decides, under the account lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import UnitOfWork
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.logging import get_logger
from services.ledger.domain import chart
from services.ledger.domain import errors as ledger_errors
from services.ledger.domain.errors import LedgerError
from services.ledger.domain.transfers import Posting
from services.ledger.store import queries
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain import entitlements as ent
from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain import postings as p
from services.ledger.wallet.domain.entitlements import Action, HolderType, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.store import wallet as store

log = get_logger("juhe.ledger.topup_refunds")

PLATFORM = "platform"
TOP_UP = "top_up"
TOP_UP_REFUND = "top_up_refund"
TOP_UP_REFUND_LATE = "top_up_refund_late"


def merchant_order_no(holder_id: str, idempotency_key: str) -> str:
    """Deterministic per (holder, key), within the cashier's 64 characters and alphabet."""
    digest = hashlib.sha256(f"{holder_id}\x00{idempotency_key}".encode()).hexdigest()[:40]
    return f"wtu_{digest}"


async def precheck_top_up(
    conn: AsyncConnection, holder_id: str, amount_minor: int, currency: str, now: datetime
) -> None:
    """Allowed at the holder's KYC level, within the single limit, and (a pre-check only: the payment may
    never be paid) within what today's and this month's windows have left. The credit itself, once paid,
    is decided by the engine under the locks."""
    holder = await store.require_holder(conn, holder_id)
    holder_type, level = HolderType(holder["holder_type"]), store.level_of(holder)
    rule = ent.effective(
        await store.entitlement_overrides(conn), holder_type, level, SubaccountType.BALANCE, Action.TOP_UP
    )
    ent.check(rule, amount_minor, what="top_up on balance")
    for window in ent.windows(rule, now):
        used = await store.quota_used_minor(
            conn,
            holder_id=holder_id,
            subaccount=SubaccountType.BALANCE,
            action=Action.TOP_UP,
            window=window,
            currency=currency,
        )
        if used + amount_minor > window.limit_minor:
            raise WalletError(
                errors.LIMIT_EXCEEDED,
                f"the {window.period}ly top-up limit of {window.limit_minor} would be exceeded",
                limit="daily" if window.period == "day" else "monthly",
                limit_minor=window.limit_minor,
            )


async def insert_order(conn: AsyncConnection, values: dict[str, Any]) -> RowMapping:
    """The order of (holder, key): new, or the existing one when the body is the same; another body → 409."""
    row = (
        (
            await conn.execute(
                text(
                    """INSERT INTO wallet_topup_orders (id, holder_id, idempotency_key, body_hash, amount_minor,
                              currency, scene, merchant_id, merchant_order_no)
                       VALUES (:id, :holder_id, :idempotency_key, :body_hash, :amount_minor, :currency, :scene,
                               :merchant_id, :merchant_order_no)
                       ON CONFLICT (holder_id, idempotency_key) DO NOTHING RETURNING *"""
                ),
                values,
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        return row
    existing = await order_by_key(conn, values["holder_id"], values["idempotency_key"])
    assert existing is not None  # ON CONFLICT waited for the other inserter's commit
    if existing["body_hash"] != values["body_hash"]:
        raise Problem(IDEMPOTENCY_KEY_REUSED, f"top-up order {values['idempotency_key']} was used with another body")
    return existing


async def order_by_key(conn: AsyncConnection, holder_id: str, idempotency_key: str) -> RowMapping | None:
    sql = "SELECT * FROM wallet_topup_orders WHERE holder_id = :h AND idempotency_key = :k"
    return (await conn.execute(text(sql), {"h": holder_id, "k": idempotency_key})).mappings().first()


async def get_order(conn: AsyncConnection, holder_id: str, order_id: str) -> RowMapping | None:
    sql = "SELECT * FROM wallet_topup_orders WHERE holder_id = :h AND id = :i"
    return (await conn.execute(text(sql), {"h": holder_id, "i": order_id})).mappings().first()


async def set_payment(conn: AsyncConnection, order_id: str, payment_id: str) -> None:
    """Once: the cashier answers the same payment for the same merchant order every time."""
    sql = """UPDATE wallet_topup_orders SET payment_id = :p, updated_at = now()
              WHERE id = :i AND payment_id IS NULL"""
    await conn.execute(text(sql), {"i": order_id, "p": payment_id})


async def hold_refund(
    uow: UnitOfWork,
    writer: LedgerWriter,
    *,
    refund_id: str,
    payment_id: str,
    amount_minor: int,
    currency: str,
    timeout_seconds: int,
    now: datetime,
) -> tuple[RowMapping, bool]:
    """The pending `top_up_refund` operation (key = the refund id): §3.7 reversed for R, held until the refund's
    outcome. Refused, nothing held: a top-up the ledger has not credited (409 `top_up_not_credited`: not yet, or
    posted §3.1 to the collecting merchant), more than the top-up, or more than the sub-account's available cash
    (409 `top_up_refund_exceeds_balance`, with `available_minor`: the holder spent the rest). The bonus the top-up
    earned is not touched here: marketing revokes it on `refund.succeeded` (wallet/events/topups.py)."""
    async with uow.begin() as tx:
        credited = await store.operation_by_key(tx.conn, TOP_UP, payment_id)
        if credited is None or credited["status"] != "posted":
            raise WalletError(errors.TOP_UP_NOT_CREDITED, f"top-up {payment_id} is not credited to a wallet")
        if credited["currency"] != currency or amount_minor > int(credited["amount_minor"]):
            raise WalletError(errors.VALIDATION_FAILED, f"a refund of top-up {payment_id} is at most its amount")
        details = credited["details"] or {}
        channel, source = str(details["channel"]), str(details["account_id"])
        clearing = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.CHANNEL_CLEARING, currency=currency, channel=channel
        )
        fee = await store.shared_account(
            tx, holder_id=PLATFORM, entry=chart.CHANNEL_FEE_EXPENSE, currency=currency, channel=channel
        )
    postings = p.top_up_refund(
        clearing=clearing,
        fee_expense=fee,
        source=source,
        amount_minor=amount_minor,
        top_up_minor=int(credited["amount_minor"]),
        top_up_fee_minor=int(details.get("channel_fee_minor") or 0),
        currency=currency,
    )
    movement = store.Movement(
        str(credited["holder_id"]),
        TOP_UP_REFUND,
        refund_id,
        amount_minor,
        currency,
        postings,
        pending=True,
        timeout_seconds=timeout_seconds,
        reference=refund_id,
        details={"payment_id": payment_id, "channel": channel, "account_id": source},
    )
    try:
        return await store.execute(uow, writer, movement, now=now)
    except LedgerError as exc:
        if exc.spec is not ledger_errors.INSUFFICIENT_FUNDS:
            raise
        async with uow.read() as conn:
            available = max(await store.available_minor(conn, source), 0)
        raise WalletError(
            errors.TOP_UP_REFUND_EXCEEDS_BALANCE,
            f"the holder's balance has {available} left of what top-up {payment_id} credited",
            available_minor=available,
        ) from exc


async def finish_refund(
    uow: UnitOfWork, writer: LedgerWriter, *, refund_id: str, succeeded: bool, now: datetime
) -> bool:
    """Post (`refund.succeeded`) or void (`refund.failed`) the refund's hold; False when `refund_id` has none (not
    a top-up's refund). Repeats are harmless (posting a posted hold replays). A hold that ran out before the
    channel paid the refund is posted as a new transfer (`top_up_refund_late`, same lines) if the balance still
    covers it; if not, the holder spent money the channel also returned: logged for an operator, not retried."""
    async with uow.read() as conn:
        operation = await store.operation_by_key(conn, TOP_UP_REFUND, refund_id)
    if operation is None:
        return False
    try:
        await store.finish_hold(uow, writer, str(operation["id"]), post=succeeded)
    except (WalletError, LedgerError) as exc:
        # A success whose hold ran out, or was voided as an orphan (the cashier said it did not know the refund,
        # then committed it after all): the channel paid, so the holder's cash goes out late if it is still there.
        released = exc.spec in (ledger_errors.PENDING_TRANSFER_EXPIRED, ledger_errors.PENDING_TRANSFER_ALREADY_VOIDED)
        if not (succeeded and released):
            log.warning("top-up refund hold already finished", refund_id=refund_id, code=exc.spec.code)
            return True
        await _post_late(uow, writer, operation, now)
    return True


async def orphan_refund_holds(conn: AsyncConnection, *, older_than_seconds: float, limit: int) -> list[RowMapping]:
    """Pending top-up refund holds old enough that the cashier must have committed their refund by now, that it
    has not confirmed knowing yet (through the pending-operations index)."""
    sql = """SELECT * FROM wallet_operations
              WHERE status = 'pending' AND kind = :k AND NOT (details ? 'cashier_known')
                AND created_at < clock_timestamp() - make_interval(secs => :age)
              ORDER BY id LIMIT :n"""
    params = {"k": TOP_UP_REFUND, "age": older_than_seconds, "n": limit}
    return list((await conn.execute(text(sql), params)).mappings().all())


async def resolve_orphan_refund_holds(
    uow: UnitOfWork,
    writer: LedgerWriter,
    ask: Callable[[str], Awaitable[bool | None]],
    *,
    older_than_seconds: float,
    limit: int,
) -> int:
    """The reconciler's round for top-up refund holds the cashier may have lost (it died between the ledger's
    answer and its own commit, so no refund event will ever come): `ask` the cashier about each refund id; one it
    never recorded is voided (the cash is the holder's again; a late success is still posted, finish_refund), one
    it knows is marked so and left to its refund's events; when the cashier cannot tell, the next round asks
    again. Returns how many were looked at."""
    async with uow.read() as conn:
        found = await orphan_refund_holds(conn, older_than_seconds=older_than_seconds, limit=limit)
    for operation in found:
        refund_id = str(operation["idempotency_key"])
        known = await ask(refund_id)
        if known is None:
            continue
        if known:
            async with uow.begin() as tx:
                sql = """UPDATE wallet_operations SET details = details || '{"cashier_known": true}'::jsonb
                          WHERE id = :i"""
                await tx.conn.execute(text(sql), {"i": operation["id"]})
            continue
        try:
            await store.finish_hold(uow, writer, str(operation["id"]), post=False)
        except (WalletError, LedgerError) as exc:  # finished meanwhile (its event came after all): nothing to do
            log.info("orphaned top-up refund hold finished meanwhile", refund_id=refund_id, code=exc.spec.code)
            continue
        log.warning(
            "top-up refund hold voided: the cashier never recorded the refund",
            refund_id=refund_id,
            holder_id=operation["holder_id"],
            amount_minor=operation["amount_minor"],
        )
    return len(found)


async def _post_late(uow: UnitOfWork, writer: LedgerWriter, operation: RowMapping, now: datetime) -> None:
    async with uow.read() as conn:
        hold = await queries.get_transfer(conn, str(operation["transfer_id"]))
    assert hold is not None
    movement = store.Movement(
        str(operation["holder_id"]),
        TOP_UP_REFUND_LATE,
        str(operation["idempotency_key"]),
        int(operation["amount_minor"]),
        str(operation["currency"]),
        [Posting(x.account_id, x.direction, x.amount_minor, x.currency) for x in hold.postings],
        reference=str(operation["idempotency_key"]),
        details=dict(operation["details"] or {}),
    )
    try:
        await store.execute(uow, writer, movement, now=now)
    except LedgerError as exc:
        if exc.spec is not ledger_errors.INSUFFICIENT_FUNDS:
            raise
        log.error(
            "top-up refunded by the channel after its hold ran out and the holder spent the money",
            refund_id=operation["idempotency_key"],
            holder_id=operation["holder_id"],
        )
