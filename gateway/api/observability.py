"""The gateway's trace-and-measure middleware, as plain ASGI.

Every service gets `libs.common.web.install_observability`, a Starlette `BaseHTTPMiddleware`: it runs
the endpoint in a separate task and re-streams the response, which costs the gateway (a proxy that
does little else per request) a noticeable share of its CPU. This does the same work (trace id from
`X-Trace-Id` or `traceparent`, the same Prometheus series, `X-Trace-Id` on the answer) in the
request's own task. `use_plain_asgi_observability` swaps it in for the library's middleware.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common import tracing
from libs.common.logging import TRACE_HEADER, new_trace_id, trace_id_var
from libs.common.web import http_request_seconds, http_requests_total

SERIES_CACHED_MAX = 4096


def _from_traceparent(value: str | None) -> str | None:
    # W3C traceparent: version-traceid-parentid-flags
    if value and value.count("-") == 3:
        return value.split("-")[1]
    return None


class TraceAndMeasure:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # The labelled children, looked up once per (method, route, status): `labels()` takes a lock and
        # builds a tuple key on every call. Bounded by the routes × methods × statuses the app can answer.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _children(self, method: str, route_path: str, status: int) -> tuple[Any, Any]:
        key = (method, route_path, status)
        children = self._series.get(key)
        if children is None:
            children = (
                http_requests_total.labels(self.service, method, route_path, str(status)),
                http_request_seconds.labels(self.service, method, route_path),
            )
            if len(self._series) < SERIES_CACHED_MAX:
                self._series[key] = children
        return children

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        trace_id = (
            tracing.current_trace_id()  # the server span's, while tracing is on (None at once while off)
            or headers.get(TRACE_HEADER)
            or _from_traceparent(headers.get("traceparent"))
            or new_trace_id()
        )
        token = trace_id_var.set(trace_id)
        started = time.perf_counter()
        status: list[int] = []

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                MutableHeaders(scope=message)[TRACE_HEADER] = trace_id
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        finally:
            trace_id_var.reset(token)
            if status:
                route: Any = scope.get("route")
                route_path = getattr(route, "path", "unmatched")
                method = scope["method"]
                requests, seconds = self._children(method, route_path, status[0])
                requests.inc()
                seconds.observe(time.perf_counter() - started)


def use_plain_asgi_observability(app: FastAPI, service: str) -> None:
    """Replace the library's BaseHTTPMiddleware (installed by create_service_app) with `TraceAndMeasure`."""
    kept = [m for m in app.user_middleware if m.cls is not BaseHTTPMiddleware]
    if len(kept) != len(app.user_middleware) - 1:
        raise RuntimeError("expected exactly one BaseHTTPMiddleware (libs.common.web.install_observability)")
    app.user_middleware[:] = [*kept, Middleware(TraceAndMeasure, service=service)]
