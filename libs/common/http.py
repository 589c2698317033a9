"""Pooled httpx clients for service-to-service calls, with trace propagation and bounded timeouts.

Retries happen only for idempotent methods (GET/HEAD/PUT/DELETE) or requests carrying an
Idempotency-Key, on connection errors and 502/503/504, with exponential backoff (tenacity).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from libs.common.logging import TRACE_HEADER, current_trace_id

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


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, built once per process: building it (loading the CA bundle) is
    ~25 ms of CPU, which every `httpx.AsyncClient()` otherwise pays again (docs/performance.md, "Start-up").
    Pass it as `verify=` to a client made per call."""
    return httpx.create_ssl_context()


def service_client(
    base_url: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, **kwargs: Any
) -> httpx.AsyncClient:
    kwargs.setdefault("verify", shared_tls_context())
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        event_hooks={"request": [_add_trace]},
        **kwargs,
    )


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


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when the body is not one (an HTML error page from a proxy, an
    empty 502): callers then decide on the status alone instead of crashing on a peer's bad answer."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
