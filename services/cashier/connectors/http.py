"""The HTTP client a channel connector calls its channel through: one per connector, so one per merchant config
version (connectors are cached by flows/context.py's `ConnectorPool`).

What it costs per call, and what it avoids (docs/performance.md, "Fifth pass" and "Sixth pass: transport"):

* httpx's engine: the client's transport is `libs.common.keepalive.KeepAliveTransport` (HTTP/1.1 keep-alive over
  asyncio streams and httptools, ~0.1 ms of client CPU per call instead of httpcore/h11/anyio's 0.5–1.1 ms), unless
  the environment routes the client through a proxy (then httpx's own, which applies it);
* a TLS context per client: verifying TLS on the process's shared context (`shared_tls_context`, httpx's default,
  built once: building one loads the CA bundle, ~25 ms of CPU), SNI and the certificate checked for the URL's host;
* connections closed after a burst: every connection the pool opened may stay alive (4 s idle) instead of only a
  few, so 16 concurrent creates do not close connections after each round and open (and, to a real channel,
  TLS-handshake) new ones for the next.

A response is bounded (`CHANNEL_RESPONSE_BYTES_MAX`, above any bill a config allows by default); the bill download
streams and applies its config's own, lower bound.
"""

from __future__ import annotations

from typing import Any

import httpx

from libs.common import tracing
from libs.common.http import lean_transport, shared_tls_context

CHANNEL_CONNECTIONS_MAX = 50  # concurrent calls to one channel per connector; each may be kept alive
CHANNEL_RESPONSE_BYTES_MAX = 1024 * 1024 * 1024


def channel_client(
    *, read_timeout_seconds: float, connect_timeout_seconds: float | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for one connector: verifying TLS (shared context), every connection kept alive."""
    transport = lean_transport(
        kwargs, connections_max=CHANNEL_CONNECTIONS_MAX, response_bytes_max=CHANNEL_RESPONSE_BYTES_MAX
    )
    if transport is not None:
        kwargs["transport"] = transport
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(read_timeout_seconds, connect=connect_timeout_seconds or read_timeout_seconds),
        limits=httpx.Limits(max_connections=CHANNEL_CONNECTIONS_MAX, max_keepalive_connections=CHANNEL_CONNECTIONS_MAX),
        verify=shared_tls_context(),
        **kwargs,
    )
    return client if transport is None else tracing.instrument_client(client)
