"""Accounts: open and read."""

from __future__ import annotations

from fastapi import APIRouter, status

from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.web import UowDep
from services.ledger.api.schemas import AccountCreateRequest, AccountResponse
from services.ledger.domain.errors import ACCOUNT_NOT_FOUND
from services.ledger.events import ACCOUNT_OPENED, ACCOUNTS_TOPIC
from services.ledger.store.accounts import get_account, insert_account

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def open_account(body: AccountCreateRequest, uow: UowDep) -> AccountResponse:
    async with uow.begin() as tx:
        row = await insert_account(tx.conn, {"id": new_id("acc"), **body.model_dump()})
        account = AccountResponse.model_validate(dict(row))
        tx.publish(topic=ACCOUNTS_TOPIC, type=ACCOUNT_OPENED, subject=account.id, data=account.model_dump(mode="json"))
    return account


@router.get("/{account_id}")
async def read_account(account_id: str, uow: UowDep) -> AccountResponse:
    async with uow.read() as conn:
        row = await get_account(conn, account_id)
    if row is None:
        raise Problem(ACCOUNT_NOT_FOUND, f"account {account_id} does not exist")
    return AccountResponse.model_validate(dict(row))
