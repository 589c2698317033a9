"""Request and response schemas of the routing API (pydantic)."""
