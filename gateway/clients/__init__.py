"""Calls from the gateway's own flows to other services and to outside providers (one module per peer)."""
