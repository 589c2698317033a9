"""Request and response schemas of the marketing API (pydantic)."""
