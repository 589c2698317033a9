"""The ledger's calls to other services (CONTRIBUTING §2): the cashier (top-up payments and refunds)."""
