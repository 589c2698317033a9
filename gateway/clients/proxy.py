"""Forwarding to the services: one keep-alive pool per service (`upstream_http.KeepAlivePool`) for the
first attempt of every call, a pooled httpx client per service for read retries and OpenAPI fetches;
bounded timeouts, safe retries.

Retries: reads (GET/HEAD/OPTIONS) are retried on transport errors, timeouts and 502/503/504 by
`libs.common.http.request_with_retries`. Writes are retried only when the connection could not be
opened at all (nothing reached the service), so a write is never sent twice by the gateway even when
the service does not de-duplicate by Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gateway.clients.upstream_http import (
    KeepAlivePool,
    UpstreamConnectError,
    UpstreamReply,
    UpstreamTimeoutError,
    UpstreamTransportError,
)
from gateway.config import Settings
from gateway.domain.errors import UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE
from libs.common import tracing
from libs.common.errors import Problem
from libs.common.http import RETRYABLE_STATUS, request_with_retries, service_client
from libs.common.internal_auth import DEV_MERCHANT_HEADER, IDENTITY_HEADER
from libs.common.logging import TRACE_HEADER, current_trace_id

FORWARDED_REQUEST_HEADERS = frozenset(
    {"accept", "accept-language", "content-type", "idempotency-key", "user-agent", "traceparent", "tracestate"}
)
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "server",
        TRACE_HEADER.lower(),
    }
)
CONNECT_RETRY_DELAY_SECONDS = 0.05
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# httpcore asks `import sniffio` several times per request to learn which event loop runs it; sniffio is
# not installed here, and a failed import is not cached, so every request searched sys.path on disk
# (~5 % of the gateway's CPU in the profile). Marking it absent makes that import fail at once, and
# httpcore then assumes asyncio, which is what runs the gateway.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
# Set by the gateway from the authenticated principal, never taken from the client. Transitional: services
# that do not verify X-Juhe-Identity yet read these (the cashier's merchant header, routing's actor).
ACTOR_HEADER = "X-Juhe-Actor"


# scheme://authority of an absolute URL inside a header value (Location, Content-Location, Link, Refresh).
_ABSOLUTE_ORIGIN = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://([^/?#\s<>;,\"']*)")


def is_internal_authority(authority: str, upstreams: frozenset[str]) -> bool:
    """An upstream service's host:port, or any loopback, private, link-local or unnamed-local host."""
    if authority.lower() in upstreams:
        return True
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")) or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified


def without_internal_origins(value: str, upstreams: frozenset[str]) -> str:
    """A response header value with every internal scheme://host:port removed, so `http://127.0.0.1:8001/v1/x`
    becomes the relative `/v1/x` (which the client resolves against the gateway's public origin): no answer
    passed through the gateway names a service's internal address."""

    def strip(match: re.Match[str]) -> str:
        return "" if is_internal_authority(match.group(1), upstreams) else match.group(0)

    return _ABSOLUTE_ORIGIN.sub(strip, value)


@dataclass(frozen=True, slots=True)
class ForwardedIdentity:
    token: str
    merchant_id: str | None
    actor: str


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Upstreams:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.internal_authorities = frozenset(urlsplit(url).netloc.lower() for url in settings.service_urls().values())
        # Our own transport: a bigger keep-alive pool than the library default (the gateway fans in).
        limits = httpx.Limits(
            max_connections=settings.upstream_connections_max,
            max_keepalive_connections=settings.upstream_connections_max,
        )
        self.clients: dict[str, httpx.AsyncClient] = {
            name: service_client(
                url,
                timeout_seconds=settings.upstream_timeout_seconds,
                transport=httpx.AsyncHTTPTransport(limits=limits),
            )
            for name, url in settings.service_urls().items()
        }
        # The hot path: see gateway/clients/upstream_http.py for why not httpx there.
        self.pools: dict[str, KeepAlivePool] = {
            name: KeepAlivePool(
                url,
                connections_max=settings.upstream_connections_max,
                timeout_seconds=settings.upstream_timeout_seconds,
                response_bytes_max=settings.upstream_response_bytes_max,
            )
            for name, url in settings.service_urls().items()
        }

    async def close(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients.values()), return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()), return_exceptions=True)

    async def forward(
        self,
        service: str,
        *,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: bytes,
        identity: ForwardedIdentity | None,
        client_ip: str | None,
    ) -> UpstreamResponse:
        """`identity` None only for passthrough paths (channel notifications): nothing vouched for.

        `path_and_query` goes on the request line byte for byte as the client sent it (the string its
        signature covered), without re-encoding.
        """
        out = {name: value for name, value in headers.items() if name.lower() in FORWARDED_REQUEST_HEADERS}
        if identity is not None:
            out[IDENTITY_HEADER] = identity.token
            out[ACTOR_HEADER] = identity.actor
            if identity.merchant_id:
                out[DEV_MERCHANT_HEADER] = identity.merchant_id
        if client_ip:
            out["X-Forwarded-For"] = client_ip
        trace_id = current_trace_id()
        if trace_id:
            out[TRACE_HEADER] = trace_id
        method = method.upper()
        try:
            if tracing.enabled():
                reply = await self._send_traced(service, method, path_and_query, out, body)
            elif method in READ_METHODS:
                reply = await self._send_read(service, method, path_and_query, out, body)
            else:
                reply = await self._send_write(service, method, path_and_query, out, body)
        except (httpx.TimeoutException, UpstreamTimeoutError) as exc:
            raise Problem(UPSTREAM_TIMEOUT, f"{service} did not answer in time") from exc
        except (httpx.TransportError, UpstreamTransportError) as exc:
            raise Problem(UPSTREAM_UNAVAILABLE, f"{service} is unavailable") from exc
        kept = {
            k: without_internal_origins(v, self.internal_authorities) if "://" in v else v
            for k, v in reply.headers
            if k.lower() not in DROPPED_RESPONSE_HEADERS
        }
        return UpstreamResponse(reply.status, kept, reply.body)

    async def _send_traced(
        self, service: str, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> UpstreamReply:
        """The same send inside a CLIENT span whose `traceparent` the service continues (the pool is ours, not
        an instrumented library). Only while tracing is on: `forward` does not come here otherwise."""
        with tracing.client_span(
            f"{method} {service}",
            headers,
            **{"http.request.method": method, "server.address": service, "url.path": url.split("?", 1)[0]},
        ) as span:
            if method in READ_METHODS:
                reply = await self._send_read(service, method, url, headers, body)
            else:
                reply = await self._send_write(service, method, url, headers, body)
            span.set_attribute("http.response.status_code", reply.status)
            return reply

    async def _send_read(
        self, service: str, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> UpstreamReply:
        """The first attempt on the lean pool (the common case), then the library's bounded retries with
        backoff on transport errors, timeouts and 502/503/504."""
        try:
            reply = await self.pools[service].request(method, url, headers.items(), body)
            if reply.status not in RETRYABLE_STATUS:
                return reply
        except UpstreamTransportError:
            pass
        response = await request_with_retries(self.clients[service], method, url, headers=headers, content=body)
        return UpstreamReply(response.status_code, list(response.headers.items()), response.content)

    async def _send_write(
        self, service: str, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> UpstreamReply:
        """Sent again only when no connection could be opened (nothing reached the service)."""
        attempt = 0
        while True:
            try:
                return await self.pools[service].request(method, url, headers.items(), body)
            except UpstreamConnectError:
                attempt += 1
                if attempt > self.settings.upstream_connect_retries_max:
                    raise
                await asyncio.sleep(CONNECT_RETRY_DELAY_SECONDS * attempt)
