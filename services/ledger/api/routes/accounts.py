"""Accounts: open, read, list by holder, freeze / unfreeze / close, balance (as of), statement.

Books (docs/ledger.md §2.1): a caller acting for a merchant with a key of a mode (test or live, forwarded by the
gateway: a platform key on a merchant's behalf) opens, reads and changes only accounts of that book; an account of
the other book is 404 `account_not_found`, as if it did not exist. Any other caller (the platform acting for
itself, whose ledger holds both books and live-only wallets; a Juhe service; a console) names the book with
`livemode` or sees both, each account marked (`libs.common.internal_auth.caller_livemode`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.engine import RowMapping

from libs.common.errors import IDEMPOTENCY_KEY_REUSED, VALIDATION_FAILED, Problem
from libs.common.internal_auth import CallerLivemode, caller_livemode
from libs.common.paging import KnownQueryOnly, cursor_query, page_limit
from libs.common.web import UowDep
from services.ledger.api.schemas import (
    AccountCreateRequest,
    AccountListResponse,
    AccountResponse,
    BalanceResponse,
    EntryResponse,
    StatementResponse,
    balances_schema,
)
from services.ledger.domain.accounts import Account
from services.ledger.domain.errors import ACCOUNT_NOT_FOUND
from services.ledger.events import (
    ACCOUNT_CLOSED,
    ACCOUNT_FROZEN,
    ACCOUNT_UNFROZEN,
    ACCOUNTS_TOPIC,
)
from services.ledger.flows import accounts
from services.ledger.flows.accounts import account_response
from services.ledger.store import accounts as store
from services.ledger.store import queries
from services.ledger.store.codec import account_from_row

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


def _not_found(account_id: str) -> Problem:
    return Problem(ACCOUNT_NOT_FOUND, f"account {account_id} does not exist", account_id=account_id)


def _in_book(row: RowMapping | None, account_id: str, livemode: bool | None) -> RowMapping:
    """The account if it exists in the caller's book; 404 otherwise (the other book's accounts are not shown)."""
    if row is None or livemode not in (None, row["livemode"]):
        raise _not_found(account_id)
    return row


@router.post("", status_code=status.HTTP_201_CREATED)
async def open_account(
    body: AccountCreateRequest, uow: UowDep, response: Response, request: Request
) -> AccountResponse:
    """201 opened; with an `idempotency_key`, a repeat of the same body (in the same book) is 200 with the original
    account. The book is the caller's key mode (a body naming the other is 422), else `livemode`, else live."""
    own = await caller_livemode(request, body.livemode)
    body = body.model_copy(update={"livemode": own is not False})
    async with uow.begin() as tx:
        result, created = await accounts.open_account(tx, body, body.idempotency_key)
        if result is None:
            raise Problem(IDEMPOTENCY_KEY_REUSED, "idempotency_key used for another account")
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return result


@router.get("", dependencies=[KnownQueryOnly])
async def list_accounts(
    uow: UowDep,
    holder_id: Annotated[str, Query(max_length=128)],
    limit: Annotated[int, Depends(page_limit(50))],
    livemode: CallerLivemode,
    cursor: Annotated[str | None, cursor_query(r"^acc_[0-9a-z]+$")] = None,
) -> AccountListResponse:
    """A holder's accounts by id, in the one list shape (libs.common.paging), of the caller's book."""
    async with uow.read() as conn:
        rows = await store.list_accounts(conn, holder_id=holder_id, after_id=cursor, limit=limit + 1, livemode=livemode)
    return AccountListResponse.of(rows, limit, item=account_response, cursor_of=lambda a: a.id)


@router.get("/{account_id}")
async def read_account(account_id: str, uow: UowDep, livemode: CallerLivemode) -> AccountResponse:
    async with uow.read() as conn:
        row = _in_book(await store.get_account(conn, account_id), account_id, livemode)
    return account_response(row)


async def _change_status(
    uow: UowDep, account_id: str, change: Callable[[Account], bool], event: str, livemode: bool | None
) -> AccountResponse:
    """Named state change under the row lock; the write path locks the same row, so they serialize."""
    async with uow.begin() as tx:
        row = _in_book(await store.get_account(tx.conn, account_id, for_update=True), account_id, livemode)
        account = account_from_row(row)
        old = account.status.value
        if not change(account):  # already in that state: harmless repeat
            return account_response(row)
        updated = await store.set_account_status(tx.conn, account_id, old=old, new=account.status.value)
        assert updated is not None  # we hold the row lock
        result = account_response(updated)
        tx.publish(topic=ACCOUNTS_TOPIC, type=event, subject=account_id, data=result.model_dump(mode="json"))
    return result


@router.post("/{account_id}/freeze")
async def freeze_account(account_id: str, uow: UowDep, livemode: CallerLivemode) -> AccountResponse:
    return await _change_status(uow, account_id, Account.freeze, ACCOUNT_FROZEN, livemode)


@router.post("/{account_id}/unfreeze")
async def unfreeze_account(account_id: str, uow: UowDep, livemode: CallerLivemode) -> AccountResponse:
    return await _change_status(uow, account_id, Account.unfreeze, ACCOUNT_UNFROZEN, livemode)


@router.post("/{account_id}/close")
async def close_account(account_id: str, uow: UowDep, livemode: CallerLivemode) -> AccountResponse:
    return await _change_status(uow, account_id, Account.close, ACCOUNT_CLOSED, livemode)


@router.get("/{account_id}/balance")
async def read_balance(
    account_id: str, uow: UowDep, livemode: CallerLivemode, as_of: datetime | None = None
) -> BalanceResponse:
    """Current counters, or (with `as_of`) the counters right after the last entry at or before it."""
    async with uow.read() as conn:
        row = _in_book(await store.get_account(conn, account_id), account_id, livemode)
        account = account_from_row(row)
        counters = (
            account.balances.as_tuple() if as_of is None else await queries.counters_as_of(conn, account_id, as_of)
        )
    return BalanceResponse(
        account_id=account_id, currency=account.currency, as_of=as_of, balances=balances_schema(account, counters)
    )


STATEMENT_CURSOR = r"^\d{4}-\d{2}-\d{2}T[0-9:.]+(\+\d{2}:\d{2})?\|\d{1,19}$"  # what _encode_cursor writes


def _encode_cursor(row: RowMapping) -> str:
    return f"{row['created_at'].isoformat()}|{row['id']}"


def _decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    at, _, entry_id = cursor.rpartition("|")
    try:
        return datetime.fromisoformat(at), int(entry_id)
    except ValueError:
        raise Problem(VALIDATION_FAILED, "cursor is not one this API returned") from None


@router.get("/{account_id}/statement", dependencies=[KnownQueryOnly])
async def read_statement(
    account_id: str,
    uow: UowDep,
    limit: Annotated[int, Depends(page_limit(100))],
    livemode: CallerLivemode,
    cursor: Annotated[str | None, cursor_query(STATEMENT_CURSOR)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StatementResponse:
    """Entries with the running balance after each, oldest first; `next_cursor` fetches the next page."""
    async with uow.read() as conn:
        row = _in_book(await store.get_account(conn, account_id), account_id, livemode)
        account = account_from_row(row)
        rows = await queries.statement_page(
            conn, account_id, after=_decode_cursor(cursor), since=since, until=until, limit=limit + 1
        )
    has_more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        EntryResponse(
            id=r["id"],
            transfer_id=r["transfer_id"],
            reference=r["reference"],
            kind=r["kind"],
            direction=r["direction"],
            posted_delta_minor=r["posted_delta_minor"],
            pending_delta_minor=r["pending_delta_minor"],
            currency=r["currency"],
            created_at=r["created_at"],
            balances_after=balances_schema(
                account, (r["debits_posted"], r["credits_posted"], r["debits_pending"], r["credits_pending"])
            ),
        )
        for r in rows
    ]
    return StatementResponse(
        account_id=account_id,
        currency=account.currency,
        data=entries,
        has_more=has_more,
        next_cursor=_encode_cursor(rows[-1]) if has_more else None,
    )
