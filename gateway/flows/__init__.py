"""Use cases of the gateway that span services (one module per business process)."""
