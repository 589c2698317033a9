"""Request and response schemas of the gateway API (pydantic)."""
