"""The ledger's use cases (CONTRIBUTING §2): called by the API routes and the event consumers."""
