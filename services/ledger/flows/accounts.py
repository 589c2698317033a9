"""Opening an account: one use case for the API (`POST /v1/accounts`) and the consumer of cashier events
(chart accounts opened by their `chart:` key), so both bind a key to the same body hash, check the account
in the domain before anything is written, and publish account.opened once, in the opening transaction."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping

from libs.common.db import Tx
from libs.common.ids import new_id
from services.ledger.domain.accounts import Account, AccountFlags, NormalBalance
from services.ledger.events import ACCOUNT_OPENED, ACCOUNTS_TOPIC
from services.ledger.events.accounts import AccountCreateRequest, AccountResponse
from services.ledger.store import accounts as store
from services.ledger.store.codec import account_from_row


def account_response(row: RowMapping) -> AccountResponse:
    """The API answer and the account.* event payload of a stored account."""
    return AccountResponse.of(account_from_row(row), row["created_at"])


def new_account(body: AccountCreateRequest) -> Account:
    """The domain checks flags and limit before anything is written. A body without a book is live (the API
    fills in the caller's key mode before this)."""
    return Account(
        id=new_id("acc"), holder_id=body.holder_id, currency=body.currency, kind=body.kind, code=body.code,
        normal_balance=NormalBalance(body.normal_balance) if body.normal_balance else NormalBalance.for_code(body.code),
        flags=AccountFlags(body.flags.debits_must_not_exceed_credits, body.flags.credits_must_not_exceed_debits),
        credit_limit_minor=body.credit_limit_minor, metadata=body.metadata, livemode=body.livemode is not False,
    )  # fmt: skip


async def open_account(tx: Tx, body: AccountCreateRequest, key: str | None) -> tuple[AccountResponse | None, bool]:
    """(the account, True) when opened now; (the account opened before under `key`, False) on a repeat of the
    same body; (None, False) when `key` is bound to another body (the caller says which error that is)."""
    row, created = await store.open_account(tx.conn, new_account(body), key, body.body_hash())
    if row is None:
        return None, False
    result = account_response(row)
    if created:
        tx.publish(topic=ACCOUNTS_TOPIC, type=ACCOUNT_OPENED, subject=result.id, data=result.model_dump(mode="json"))
    return result, created
