"""Use cases of the settlement service (they may do I/O: database, ledger and cashier over HTTP)."""
