"""Juhe's web process: every page (checkout, My Wallet, consoles), server-rendered, behind the gateway."""
