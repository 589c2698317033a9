"""Top-up orders (contract D): what the ledger asked the cashier to collect for a holder's wallet.

The order is recorded before the cashier is called, keyed by (holder, idempotency key), and its
`merchant_order_no` is derived from that key, so a retry after any failure sends the cashier the same
request and gets the same payment back (the cashier replays an identical merchant order). Nothing is
credited here: the wallet is credited by the ledger's consumer of `payment.succeeded` (§3.7).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from services.ledger.domain.wallet import entitlements as ent
from services.ledger.domain.wallet import errors
from services.ledger.domain.wallet.entitlements import Action, HolderType, SubaccountType
from services.ledger.domain.wallet.errors import WalletError
from services.ledger.store import wallet as store


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
    rule = ent.effective(await store.entitlement_overrides(conn), holder_type, level, SubaccountType.BALANCE,
                         Action.TOP_UP)  # fmt: skip
    ent.check(rule, amount_minor, what="top_up on balance")
    for window in ent.windows(rule, now):
        used = await store.quota_used_minor(
            conn, holder_id=holder_id, subaccount=SubaccountType.BALANCE, action=Action.TOP_UP, window=window,
            currency=currency,
        )  # fmt: skip
        if used + amount_minor > window.limit_minor:
            raise WalletError(
                errors.LIMIT_EXCEEDED, f"the {window.period}ly top-up limit of {window.limit_minor} would be exceeded",
                limit="daily" if window.period == "day" else "monthly", limit_minor=window.limit_minor,
            )  # fmt: skip


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
