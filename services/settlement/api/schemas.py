"""Request and response schemas of the settlement API (pydantic)."""
