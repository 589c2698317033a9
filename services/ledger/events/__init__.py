"""Events the ledger publishes. Topic per aggregate family; key = the aggregate id.

`ledger.accounts` (key: account id): `account.opened`, `account.frozen`, `account.unfrozen`,
`account.closed`; data = the account as `GET /v1/accounts/{id}` returns it.
`ledger.transfers` (key: transfer id): `transfer.posted` (created posted, or a pending one posted),
`transfer.pending`, `transfer.voided`, `transfer.expired`; data = `domain.engine.transfer_event_data`.
`ledger.wallet` (key: wallet operation id): `withdrawal.requested`, `withdrawal.posted`,
`withdrawal.voided`, `top_up.credited`; data = `events.wallet` (docs/contracts.md §3, wallet withdrawal).
"""

from __future__ import annotations

ACCOUNTS_TOPIC = "ledger.accounts"
TRANSFERS_TOPIC = "ledger.transfers"
WALLET_TOPIC = "ledger.wallet"

ACCOUNT_OPENED = "account.opened"
ACCOUNT_FROZEN = "account.frozen"
ACCOUNT_UNFROZEN = "account.unfrozen"
ACCOUNT_CLOSED = "account.closed"

TRANSFER_PENDING = "transfer.pending"
TRANSFER_POSTED = "transfer.posted"
TRANSFER_VOIDED = "transfer.voided"
TRANSFER_EXPIRED = "transfer.expired"

WITHDRAWAL_REQUESTED = "withdrawal.requested"
WITHDRAWAL_POSTED = "withdrawal.posted"
WITHDRAWAL_VOIDED = "withdrawal.voided"
TOP_UP_CREDITED = "top_up.credited"
