"""Request and response schemas of the cashier API (pydantic)."""
