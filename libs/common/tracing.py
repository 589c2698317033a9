"""OpenTelemetry traces for every Juhe process: off by default, OTLP when configured.

Why it is shaped this way:
- **Off unless asked.** A dev laptop, the test suite and `make run` export nothing and pay (almost) nothing:
  without a provider the OpenTelemetry API hands out non-recording spans. Tracing turns on when the
  standard variable `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and
  `OTEL_SDK_DISABLED=true` turns it off again; the exporter reads the rest of the standard `OTEL_*`
  variables itself (headers, timeout, compression). Sampling: `OTEL_TRACES_SAMPLER(_ARG)`, parent-based by
  default, so a whole payment is kept or dropped together.
- **The maintained instrumentations** (FastAPI, httpx, asyncpg, aiokafka) make the spans; this module only
  installs them once per process.
- **Events carry W3C `traceparent`.** The outbox relay publishes long after the request that wrote the
  event, in its own loop, so the Kafka headers the aiokafka instrumentation adds would name the relay's
  context, not the payment's. The envelope therefore carries the `traceparent` of the transaction that
  wrote it (`current_traceparent()`), and the consumer continues that trace (`consumer_span()`): one trace
  runs gateway → cashier → routing → channel → event → ledger.
- **Nothing is imported while off.** OpenTelemetry's API and SDK are imported when tracing is set up (or a
  helper that only runs while it is on is called): every service imports this module (through
  `libs.common.db`), and on a loaded machine the SDK's import alone took seconds of start-up.
- Juhe's own `trace_id` (logs, `X-Trace-Id`) is 32 hex digits, the same shape as a W3C trace id, so when
  tracing is on `current_trace_id()` returns the span's id and logs, headers and traces share one key.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Probes and scrapes every few seconds per pod would drown the traces that matter.
EXCLUDED_URLS = "/livez,/readyz,/metrics"
TRACER_NAME = "juhe"

_lock = threading.Lock()
_provider: TracerProvider | None = None


@cache
def _propagator() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def tracing_requested(environ: dict[str, str] | None = None) -> bool:
    """Whether this process should export traces: an OTLP endpoint is configured and the SDK not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


def setup_tracing(service_name: str, *, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install the tracer provider and the library instrumentations once per process.

    `exporter` is for tests (an in-memory exporter, spans exported synchronously); without it the OTLP/HTTP
    exporter is used when `tracing_requested()`, and nothing is installed otherwise (returns None).
    """
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        if exporter is None and not tracing_requested():
            return None
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name, "service.namespace": "juhe"}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _instrument_libraries(provider)
        _provider = provider
        return provider


def _instrument_libraries(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    # AsyncPGInstrumentor's __init__ carries no annotations; the call is the library's documented use.
    asyncpg_instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (HTTPXClientInstrumentor(), asyncpg_instrumentor, AIOKafkaInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)


def instrument_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """CLIENT spans and the `traceparent` header for a client whose transport is not httpx's own (the library
    instrumentation patches `httpx.AsyncHTTPTransport`, so `libs.common.keepalive.KeepAliveTransport` and the
    cashier's pinned webhook transport would make no span and carry no trace to the next service): the client's own
    transport is wrapped, with the same spans. A no-op while tracing is off; the client is returned."""
    if _provider is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)
    return client


def instrument_app(app: Any) -> None:
    """Server spans for a FastAPI app (W3C `traceparent` in, `X-Trace-Id` kept); a no-op while tracing is off."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS)


def shutdown_tracing() -> None:
    """Flush and stop: call at process exit so the last batch of spans is not lost."""
    global _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
            _provider = None


def enabled() -> bool:
    """Whether this process traces. Hot paths test this first, so with tracing off they create no span
    object, inject nothing and take no lock: one global read per request or event."""
    return _provider is not None


def tracer() -> Tracer:
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME)


def current_trace_id() -> str | None:
    """The active span's trace id as 32 lowercase hex digits (Juhe's trace id shape), or None (always None
    while tracing is off)."""
    if _provider is None:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the active span, for an event envelope written in this context (None while
    tracing is off: nothing is propagated then)."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def traceparent_context(traceparent: str | None) -> Context:
    """The remote parent a `traceparent` names; an empty or malformed one gives a fresh root context."""
    from opentelemetry.context import Context

    if not traceparent:
        return Context()
    return _propagator().extract({TRACEPARENT: traceparent}, context=Context())


def traceparent_of(trace_id: str | None) -> str | None:
    """A `traceparent` for an envelope that has only Juhe's `trace_id` (events written before tracing was on,
    or by a process without it): consumers still join the same trace id. The parent span id is synthetic."""
    if not trace_id or len(trace_id) != 32 or not all(c in "0123456789abcdef" for c in trace_id.lower()):
        return None
    if int(trace_id, 16) == 0:
        return None
    return f"00-{trace_id.lower()}-{trace_id[:16].lower()}-01"


@contextlib.contextmanager
def client_span(name: str, headers: dict[str, str], **attributes: Any) -> Iterator[Span]:
    """A CLIENT span for an outgoing call made without an instrumented library (the gateway's own HTTP pool);
    its `traceparent` (and `tracestate`) replace whatever `headers` carried. Call only when `enabled()`."""
    from opentelemetry.trace import SpanKind

    with tracer().start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
        headers.pop("tracestate", None)
        _propagator().inject(headers)
        yield span


@contextlib.contextmanager
def consumer_span(event_type: str, topic: str, traceparent: str | None, **attributes: Any) -> Iterator[Span]:
    """A CONSUMER span for applying one event, the child of the span that wrote the event."""
    from opentelemetry.trace import SpanKind

    parent = traceparent_context(traceparent)
    with tracer().start_as_current_span(
        f"{topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "juhe.event.type": event_type,
            **attributes,
        },
    ) as span:
        yield span
