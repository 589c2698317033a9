"""Pooled httpx clients for service-to-service calls, with trace propagation and bounded timeouts.

Retries happen only for idempotent methods (GET/HEAD/PUT/DELETE) or requests carrying an
Idempotency-Key, on connection errors and 502/503/504, with exponential backoff (tenacity).

httpx is the API; its engine is `libs.common.keepalive.KeepAliveTransport` (HTTP/1.1 keep-alive over asyncio
streams and httptools: ~0.1 ms of client CPU per request where httpcore, h11 and anyio took 0.5–1.1 ms; ADR 0003,
docs/performance.md "Sixth pass: transport"), unless the client is routed through a proxy (`lean_transport`).

`JsonServiceClient` is the lean call for the hot JSON calls a payment makes to another service (the cashier's to
routing, settlement, marketing and the ledger): the same connections and errors without httpx's client layer, ~0.25
ms of CPU less per call (ADR 0003, "When to use which").
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from libs.common import tracing
from libs.common.keepalive import KeepAliveClient, KeepAliveTransport, LeanResponse, shared_tls_context
from libs.common.logging import TRACE_HEADER, current_trace_id

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "IDEMPOTENT_METHODS",
    "RETRYABLE_STATUS",
    "JsonServiceClient",
    "LeanResponse",
    "json_object",
    "lean_transport",
    "request_with_retries",
    "service_client",
    "shared_tls_context",
]

DEFAULT_TIMEOUT_SECONDS = 5.0
RETRY_ATTEMPTS_MAX = 3
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRYABLE_STATUS = frozenset({502, 503, 504})


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"retryable status {response.status_code}")
        self.response = response


async def _add_trace(request: httpx.Request) -> None:
    trace_id = current_trace_id()
    if trace_id and TRACE_HEADER not in request.headers:
        request.headers[TRACE_HEADER] = trace_id


def lean_transport(client_kwargs: dict[str, Any], **transport_options: Any) -> KeepAliveTransport | None:
    """The transport for an `httpx.AsyncClient(**client_kwargs)`: a `KeepAliveTransport` (TLS on `verify` when it is
    an `ssl.SSLContext`, else the shared verifying context), or None (httpx's default, built from `verify`/`limits`)
    when the caller chose a transport, proxies, mounts, HTTP/2, a client certificate or another `verify` (a CA file,
    False), or when the client trusts the environment and it names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY): a
    proxied client stays on httpx's own engine, which applies the proxy and NO_PROXY rules."""
    if any(key in client_kwargs for key in ("transport", "proxy", "mounts", "cert")) or client_kwargs.get("http2"):
        return None
    verify = client_kwargs.get("verify", True)
    if not isinstance(verify, ssl.SSLContext) and verify is not True:
        return None
    if client_kwargs.get("trust_env", True) and any(k in urllib.request.getproxies() for k in ("http", "https", "all")):
        return None
    tls = verify if isinstance(verify, ssl.SSLContext) else shared_tls_context()
    return KeepAliveTransport(tls=tls, **transport_options)


def service_client(
    base_url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, **kwargs: Any
) -> httpx.AsyncClient:
    """A client for another service: `KeepAliveTransport` (up to 100 connections, kept alive 4 s idle), a timeout for
    each of connect, read, write and pool, the trace header on every request."""
    transport = lean_transport(kwargs)
    if transport is not None:
        kwargs["transport"] = transport
    kwargs.setdefault("verify", shared_tls_context())
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        event_hooks={"request": [_add_trace]},
        **kwargs,
    )
    return client if transport is None else tracing.instrument_client(client)


class JsonServiceClient:
    """JSON calls to another service on a `KeepAliveClient` (libs/common/keepalive.py), without httpx's client layer.

    For the hot service-to-service calls that need no redirect, hook, cookie, retry, proxy or streaming (ADR 0003,
    "When to use which"): what `service_client` gives them otherwise, the same way — a timeout of `timeout_seconds`
    for each of pool, connect, write and every read; httpx's exceptions (`httpx.HTTPError`), so a caller's handling
    (a 503 with a retryable code, a fallback) is unchanged; connections kept alive; `X-Trace-Id` and, while tracing
    is on, a CLIENT span and its `traceparent`. Never through a proxy, as the gateway's hop to the services: these
    are calls inside the platform. The body is encoded as httpx encodes `json=`."""

    def __init__(self, base_url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._http = KeepAliveClient(base_url, timeout_seconds=timeout_seconds)

    async def post(self, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None) -> LeanResponse:
        fields = dict(headers) if headers else {}
        trace_id = current_trace_id()
        if trace_id and TRACE_HEADER not in fields:
            fields[TRACE_HEADER] = trace_id
        content = b""
        if json is not None:
            fields["Content-Type"] = "application/json"
            content = _json_bytes(json)
        return await self._http.request("POST", path, content=content, headers=fields)

    async def aclose(self) -> None:
        await self._http.aclose()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


async def request_with_retries(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.get("headers") or {}
    retry_safe = method.upper() in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in headers)
    if not retry_safe:
        return await client.request(method, url, **kwargs)
    response: httpx.Response | None = None
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(RETRY_ATTEMPTS_MAX),
            wait=wait_exponential(multiplier=0.1, max=2),
            retry=retry_if_exception(lambda e: isinstance(e, httpx.TransportError | _RetryableStatus)),
            reraise=True,
        ):
            with attempt:
                response = await client.request(method, url, **kwargs)
                if response.status_code in RETRYABLE_STATUS:
                    raise _RetryableStatus(response)
    except _RetryableStatus as exc:
        return exc.response
    assert response is not None
    return response


def json_object(response: httpx.Response | LeanResponse) -> dict[str, Any]:
    """The response's JSON object, or {} when the body is not one (an HTML error page from a proxy, an
    empty 502): callers then decide on the status alone instead of crashing on a peer's bad answer."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
