"""Calls settlement makes to other services and to the outside world, over HTTP: the ledger, the cashier (bills,
re-query, channel transfers) and the bank. Settlement imports none of their code (docs/architecture.md)."""
