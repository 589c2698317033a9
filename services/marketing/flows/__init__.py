"""Use cases of the marketing service: one module per business process."""
