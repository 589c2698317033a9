"""Opening an account: the one use case behind `POST /v1/accounts` and the consumer of cashier events (chart
accounts opened by their `chart:` key). The body names its account (`AccountCreateRequest.to_account`: the code
from the chart of accounts for a chart kind, domain checks before anything is written), its hash binds the key
(`body_hash`, one definition), and `store.accounts.open_account` inserts it once and publishes account.opened in
the opening transaction. The wallet's store opens its sub-accounts through those same three pieces
(wallet/store/wallet.py:open_ledger_account), so whoever opens a chart account first, the others find it."""

from __future__ import annotations

from sqlalchemy.engine import RowMapping

from libs.common.db import Tx
from services.ledger.events.accounts import AccountCreateRequest, AccountResponse
from services.ledger.store import accounts as store
from services.ledger.store.codec import account_from_row


def account_response(row: RowMapping) -> AccountResponse:
    """The API answer and the account.* event payload of a stored account."""
    return AccountResponse.of(account_from_row(row), row["created_at"])


async def open_account(tx: Tx, body: AccountCreateRequest, key: str | None) -> tuple[AccountResponse | None, bool]:
    """(the account, True) when opened now; (the account opened before under `key`, False) on a repeat of the
    same body; (None, False) when `key` is bound to another body (the caller says which error that is). A code
    that disagrees with the chart, or a kind outside it without a code, is a LedgerError (422), nothing written."""
    row, created = await store.open_account(tx, body.to_account(), key, body.body_hash())
    return (None, False) if row is None else (account_response(row), created)
