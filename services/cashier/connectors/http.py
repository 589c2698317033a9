"""The HTTP client a channel connector calls its channel through: one per connector, so one per merchant config
version (connectors are cached by flows/context.py's `ConnectorPool`).

Two costs it avoids (docs/performance.md, "Fifth pass"):

* a TLS context per client: `httpx.AsyncClient()` builds one by loading the CA bundle (~25 ms of CPU); the
  process's shared verifying context (`libs.common.http.shared_tls_context`) is the same default, built once;
* connections closed after a burst: every connection the pool opened may stay alive (up to httpx's 5 s keep-alive
  expiry) instead of only 10 of them, so 16 concurrent creates do not close six connections after each round and
  open (and, to a real channel, TLS-handshake) six new ones for the next.
"""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.http import shared_tls_context

CHANNEL_CONNECTIONS_MAX = 50  # concurrent calls to one channel per connector; each may be kept alive


def channel_client(
    *, read_timeout_seconds: float, connect_timeout_seconds: float | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for one connector: verifying TLS (shared context), every connection kept alive."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read_timeout_seconds, connect=connect_timeout_seconds or read_timeout_seconds),
        limits=httpx.Limits(max_connections=CHANNEL_CONNECTIONS_MAX, max_keepalive_connections=CHANNEL_CONNECTIONS_MAX),
        verify=shared_tls_context(),
        **kwargs,
    )
