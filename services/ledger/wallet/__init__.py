"""The big wallet (大钱包) inside the ledger (docs/adr/0002-wallet-inside-the-ledger.md): holders, KYC, sub-accounts,
entitlements, operations, bills, top-ups. Its money moves through the ledger core's batching writer; the core never
imports this package (an import-linter contract), `app.py` and `worker.py` compose both."""
