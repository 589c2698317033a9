"""Pytest plugin: embedded infrastructure fixtures (filled in by the platform foundation)."""
