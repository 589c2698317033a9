"""The gateway's keep-alive pool to the services: `libs/common/keepalive.py` (moved there so every Juhe client can use
the same HTTP/1.1 code through its httpx transport; docs/adr/0003-hand-written-upstream-http-pool.md).

Why not httpx on the gateway's hot path: its request building, URL merging and cookie handling on top of httpcore's
pool, h11 and anyio were about half of the gateway's own CPU per proxied call. `KeepAlivePool` writes the request
itself (validated as strictly as h11 did), parses the reply with httptools, and tells failures apart:
`UpstreamConnectError` means no connection could be opened, so nothing reached the service (the only case in which a
write may be sent again); every other failure is an `UpstreamTransportError`.
"""

from __future__ import annotations

from libs.common.keepalive import (
    IDLE_SECONDS_MAX,
    KeepAlivePool,
    UpstreamConnectError,
    UpstreamReply,
    UpstreamTimeoutError,
    UpstreamTransportError,
)

__all__ = [
    "IDLE_SECONDS_MAX",
    "KeepAlivePool",
    "UpstreamConnectError",
    "UpstreamReply",
    "UpstreamTimeoutError",
    "UpstreamTransportError",
]
