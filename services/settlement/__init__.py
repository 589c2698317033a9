"""Settlement service."""
