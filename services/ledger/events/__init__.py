"""Events the ledger publishes. Topic per aggregate family; key = the aggregate id."""

from __future__ import annotations

ACCOUNTS_TOPIC = "ledger.accounts"
TRANSFERS_TOPIC = "ledger.transfers"

ACCOUNT_OPENED = "account.opened"
