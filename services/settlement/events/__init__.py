"""Events the settlement service publishes, and the events it consumes."""

from __future__ import annotations

SPLITS_TOPIC = "settlement.splits"
PAYOUTS_TOPIC = "settlement.payouts"

# Consumed
LEDGER_ACCOUNTS_TOPIC = "ledger.accounts"
ACCOUNT_OPENED = "account.opened"
