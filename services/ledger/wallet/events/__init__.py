"""The wallet's events: `ledger.wallet` payloads, and handlers of marketing's and the cashier's events."""
