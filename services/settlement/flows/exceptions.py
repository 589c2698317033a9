"""Work on the reconciliation exceptions pool: assign, re-query the channel (through the cashier), resolve.

Each change locks the item's work row in one transaction with its trail entry, so two operators acting at
once serialise and a resolved item stays resolved. A re-query calls the cashier outside any transaction (a
slow channel must not hold a row lock) and records the answer afterwards; if the item was resolved in the
meantime the answer is still kept on the trail, since the channel was asked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from services.settlement.clients.cashier import CashierClient
from services.settlement.domain.errors import (
    RECONCILIATION_EXCEPTION_NOT_FOUND,
    RECONCILIATION_EXCEPTION_NOT_REQUERYABLE,
)
from services.settlement.domain.exceptions import ExceptionState, check_changeable
from services.settlement.store import exceptions as store

ACTIONS_SHOWN_MAX = 200


def _missing(item_id: int) -> Problem:
    return Problem(RECONCILIATION_EXCEPTION_NOT_FOUND, f"no reconciliation exception {item_id}")


async def _locked_state(tx_conn: AsyncConnection, item_id: int) -> ExceptionState:
    state = await store.lock(tx_conn, item_id)
    if state is None:
        raise _missing(item_id)
    return ExceptionState(state)


async def detail(uow: UnitOfWork, item_id: int) -> tuple[RowMapping, list[RowMapping]]:
    async with uow.read() as conn:
        row = await store.get(conn, item_id)
        if row is None:
            raise _missing(item_id)
        return row, await store.list_actions(conn, item_id, limit=ACTIONS_SHOWN_MAX)


async def assign(uow: UnitOfWork, item_id: int, *, assignee: str, actor: str) -> None:
    async with uow.begin() as tx:
        check_changeable(await _locked_state(tx.conn, item_id), item_id)
        await store.assign(tx.conn, item_id, assignee=assignee)
        await store.add_action(tx.conn, item_id, action="assigned", actor=actor, detail={"assignee": assignee})


async def resolve(uow: UnitOfWork, item_id: int, *, reason: str, actor: str) -> None:
    async with uow.begin() as tx:
        check_changeable(await _locked_state(tx.conn, item_id), item_id)
        await store.resolve(tx.conn, item_id, reason=reason, actor=actor)
        await store.add_action(tx.conn, item_id, action="resolved", actor=actor, detail={"reason": reason})


async def requery(uow: UnitOfWork, cashier: CashierClient, item_id: int, *, actor: str) -> dict[str, Any]:
    """Ask the cashier to query the channel again for the item's payment; the answer is recorded."""
    async with uow.read() as conn:
        row = await store.get(conn, item_id)
    if row is None:
        raise _missing(item_id)
    check_changeable(ExceptionState(row["state"]), item_id)
    if not row["payment_id"]:
        raise Problem(
            RECONCILIATION_EXCEPTION_NOT_REQUERYABLE,
            f"reconciliation exception {item_id} ({row['outcome']}) names no Juhe payment",
        )
    result = {"payment_id": row["payment_id"], **await cashier.requery_payment(row["payment_id"])}
    async with uow.begin() as tx:
        await _locked_state(tx.conn, item_id)
        await store.record_requery(tx.conn, item_id, result=result)
        await store.add_action(tx.conn, item_id, action="requeried", actor=actor, detail=result)
    return result
