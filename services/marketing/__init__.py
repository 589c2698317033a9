"""Marketing service."""
