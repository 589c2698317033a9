"""The FastAPI application every service is built on: errors, health, metrics, tracing, worker.

`create_service_app` is all a service's `app.py` calls. The worker (outbox relay, epoch watcher,
inbox consumers and the service's own background loops) runs inside the same process when the role
is `all` (the dev default) or alone when the role is `worker`, so SREs can scale API and worker
replicas separately without a different code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common import errors, tracing, unstorable
from libs.common.db import UnitOfWork, create_engine
from libs.common.failures import is_unstorable_text_error, outage_spec
from libs.common.inbox import InboxConsumer, Subscription
from libs.common.kafka import EpochWatcher, KafkaOptions
from libs.common.logging import TRACE_HEADER, configure_logging, get_logger, new_trace_id, trace_id_var
from libs.common.metadata import METADATA_ERROR_TYPE
from libs.common.outbox import OutboxRelay
from libs.common.settings import ServiceSettings
from libs.common.tasks import close_bounded, raise_if_cancelled, stop_task
from libs.common.wakeups import Waiter, Wakeups

log = get_logger("juhe.web")

READINESS_TIMEOUT_SECONDS = 2.0

http_requests_total = Counter("juhe_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
http_request_seconds = Histogram(
    "juhe_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)


@dataclass
class Runtime:
    """What routes and background tasks share in one process; kept on `app.state.runtime`."""

    settings: ServiceSettings
    engine: AsyncEngine
    uow: UnitOfWork
    # The service's typed context (its clients and helpers, built at start-up): read it through the service's
    # own accessor over `context_of`, never by a string key (CONTRIBUTING "Typed context").
    context: object | None = None
    # Closed after the loops stop, in order (clients the start-up opened).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The broker-epoch watcher a worker's loops share (set by `worker_tasks`).
    epoch_watcher: EpochWatcher | None = None
    # The process's one LISTEN connection, shared by the relay and the loops woken by their work (`worker_tasks`).
    wakeups: Wakeups | None = None
    _kafka_client: AIOKafkaClient | None = None


ContextT = TypeVar("ContextT")


def context_of(runtime: Runtime, kind: type[ContextT]) -> ContextT:
    """The service's typed context: one dataclass per service (its `context.py`) instead of string-keyed
    lookups, so a missing or misspelt dependency fails type checking, and a service started without its
    start-up hook fails here with the reason rather than with a KeyError somewhere deeper."""
    context = runtime.context
    if not isinstance(context, kind):
        raise RuntimeError(f"{kind.__name__} is not set: the service's start-up builds it (its app.py)")
    return context


BackgroundTask = Callable[[Runtime], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerGroup:
    """One more consumer group of a service beside its default one (`juhe-<service>`): group id
    `juhe-<service>-<name>`, so its offsets and its inbox rows are its own. `subscriptions` is called with the
    runtime once the start-up hook ran, for handlers that need a client the hook builds (the ledger's batching
    writer posts the cashier's events)."""

    name: str
    subscriptions: Callable[[Runtime], Sequence[Subscription]]


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime_dependency(request: Request) -> Runtime:
    """`get_runtime` as a dependency. Async on purpose, as every dependency on a request's path: FastAPI runs
    a plain `def` dependency in its thread pool, a thread hand-off per request (docs/performance.md)."""
    return get_runtime(request)


async def get_uow(request: Request) -> UnitOfWork:
    return get_runtime(request).uow


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]
UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def problem_response(spec: errors.ErrorSpec, detail: str, request: Request | None, **ext: Any) -> JSONResponse:
    body = errors.problem_body(spec, detail, str(request.url.path) if request else None, **ext)
    headers = {}
    trace_id = trace_id_var.get()
    if trace_id:
        headers[TRACE_HEADER] = trace_id
    if "retry_after_seconds" in ext:
        headers["Retry-After"] = str(int(ext["retry_after_seconds"]))
    return JSONResponse(body, status_code=spec.status, media_type=errors.PROBLEM_CONTENT_TYPE, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.Problem)
        return problem_response(exc.spec, exc.detail, request, **exc.extensions)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        if any(d["type"] == "json_invalid" for d in details):
            return problem_response(errors.MALFORMED_REQUEST, "The body is not valid JSON", request, errors=details)
        if any(d["type"] == METADATA_ERROR_TYPE for d in details):  # libs.common.metadata's limits
            return problem_response(errors.METADATA_INVALID, "The metadata is over its limits", request, errors=details)
        return problem_response(errors.VALIDATION_FAILED, "Some fields are invalid", request, errors=details)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        spec = {
            404: errors.ROUTE_NOT_FOUND,
            405: errors.METHOD_NOT_ALLOWED,
            401: errors.UNAUTHORIZED,
            403: errors.FORBIDDEN,
            413: errors.PAYLOAD_TOO_LARGE,
        }.get(exc.status_code)
        if spec is None:
            spec = errors.ErrorSpec(f"http_{exc.status_code}", exc.status_code, str(exc.detail))
        detail = spec.title if exc.status_code in (404, 405) else str(exc.detail)
        return problem_response(spec, detail, request)

    async def on_infrastructure_error(request: Request, exc: Exception) -> Response:
        """A database or broker error: the request's own bad text (422), an outage (503), else a crash (500)."""
        if is_unstorable_text_error(exc):
            # PostgreSQL (or the driver encoding the value) refused the text before changing anything and the
            # unit of work rolled back: the request is at fault, not the service.
            return unstorable_text_response(request, "A value contains text that cannot be stored (such as U+0000)")
        spec = outage_spec(exc)
        if spec is None:
            raise exc  # ServerErrorMiddleware renders it through on_crash (500) and logs it
        log.warning("dependency unavailable", code=spec.code, error=repr(exc)[:300], path=request.url.path)
        return problem_response(spec, spec.title, request, retry_after_seconds=errors.OUTAGE_RETRY_AFTER_SECONDS)

    async def on_crash(request: Request, exc: Exception) -> Response:
        spec = outage_spec(exc)  # an outage wrapped in another exception type (a flow's own error, a task's)
        if spec is not None:
            return problem_response(spec, spec.title, request, retry_after_seconds=errors.OUTAGE_RETRY_AFTER_SECONDS)
        log.exception("unhandled error", path=request.url.path)
        return problem_response(errors.INTERNAL_ERROR, "Internal error", request)

    app.add_exception_handler(errors.Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for infrastructure_error in INFRASTRUCTURE_ERRORS:
        app.add_exception_handler(infrastructure_error, on_infrastructure_error)
    app.add_exception_handler(Exception, on_crash)


def unstorable_text_response(request: Request | None, detail: str, where: str | None = None) -> JSONResponse:
    loc = [where] if where else []
    return problem_response(
        errors.VALIDATION_FAILED,
        detail,
        request,
        errors=[{"loc": loc, "msg": detail, "type": "string_unstorable_character"}],
    )


# The exception types whose handler looks at the cause: the database's and the broker's, and bare socket
# errors (asyncpg raises ConnectionRefusedError/OSError unwrapped from connect, also through SQLAlchemy).
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    SQLAlchemyTimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    KafkaError,
    httpx.TransportError,  # a peer service down, where no flow handled it
    UnicodeEncodeError,  # a lone surrogate reaching an .encode() past the boundary: the request's text
)


class UnstorableTextGuard:
    """Pure ASGI: refuses a request whose path, query, headers or JSON body hold unstorable text
    (`libs.common.unstorable`) with 422 `validation_failed`, before the application sees it, so nothing
    is written. A JSON body is read whole first (FastAPI reads it whole anyway) and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        refused = unstorable.request_head_problem(raw_path, scope.get("query_string", b""), headers)
        if refused is not None:
            await self._refuse(scope, receive, send, refused[1], refused[0])
            return
        content_type = next((v for k, v in headers if k == b"content-type"), None)
        if scope.get("method") in BODYLESS_METHODS or not unstorable.is_json_media_type(content_type):
            await self.app(scope, receive, send)
            return
        body, left = await receive_body(receive)
        if left is not None:  # the client left: let the application see it
            await self.app(scope, replay_body([], left, receive), send)
            return
        problem = unstorable.json_body_problem(body)
        if problem is not None:
            await self._refuse(scope, receive, send, problem, "body")
            return
        await self.app(scope, replay_body([body], None, receive), send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str, where: str) -> None:
        response = unstorable_text_response(Request(scope), f"{where}: {detail}", where)
        await response(scope, receive, send)


BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # no Juhe route reads a body on these


async def receive_body(receive: Receive) -> tuple[bytes, Message | None]:
    """A request's whole body, and the message that ended it early (the client left: `http.disconnect`) or None."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay_body(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A `receive` that hands over the body already read, then defers to the real one (disconnects)."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if chunks else []
    if last is not None:
        pending.append(last)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


BodyT = TypeVar("BodyT", bound=BaseModel)


class JsonFastRoute(Route, Generic[BodyT]):
    """A hot `POST` whose valid JSON bodies skip FastAPI's per-request machinery: the body is validated straight from
    its bytes (`model_validate_json`), `answer` is awaited with the process's `Runtime`, and its model is sent as
    pydantic's JSON, the bytes FastAPI sends for it. FastAPI's route matching, dependency solving, request-body
    parsing and response validation cost ~70-80 us of CPU per request more than this (docs/performance.md, "Sixth
    pass: the edges").

    The FastAPI route of the same path stays (the OpenAPI document shows it) and serves every request this one
    declines, unchanged: a body that does not validate (so every refusal is FastAPI's own 422, byte for byte), a
    content type FastAPI would not parse as JSON, a client that left mid-body. Exceptions go up to the application's
    handlers as from any route. Insert it before the routes: `app.router.routes.insert(0, JsonFastRoute(...))`.

    A route whose answer needs more than the runtime and the body (the caller's identity from the headers, a status
    of its own: the cashier's create) subclasses it and overrides `respond`."""

    DECLINED = "juhe.fast_route_declined"  # set in the scope of a request handed on to the FastAPI route

    def __init__(
        self, path: str, body: type[BodyT], answer: Callable[[Runtime, BodyT], Awaitable[BaseModel]] | None = None
    ) -> None:
        super().__init__(path, self._unused, methods=["POST"], include_in_schema=False)
        self.body = body
        self.answer = answer

    @staticmethod
    async def _unused(request: Request) -> Response:  # pragma: no cover - `handle` is the route's whole work
        raise NotImplementedError

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == self.path
            and not scope.get(self.DECLINED)
        ):
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {}, "route": self}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        content_type = next((v for k, v in headers if k == b"content-type"), None)
        parsed: BodyT | None = None
        if unstorable.is_json_media_type(content_type):
            raw, left = await receive_body(receive)
            receive = replay_body([raw], left, receive)
            if left is None:
                with contextlib.suppress(ValidationError):
                    parsed = self.body.model_validate_json(raw)
        if parsed is None:
            scope[self.DECLINED] = True
            await scope["app"].router(scope, receive, send)  # routed again, past this route: FastAPI's own
            return
        response = await self.respond(Request(scope, receive), parsed)
        await response(scope, receive, send)

    async def respond(self, request: Request, body: BodyT) -> Response:
        """The answer to a valid body: `answer`'s model, as `json_answer` sends it."""
        assert self.answer is not None, "give `answer`, or override `respond`"
        return json_answer(await self.answer(request.app.state.runtime, body))


def json_answer(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as FastAPI sends a route's returned model: pydantic's JSON of it, by alias (FastAPI's default)."""
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")


# The labelled metric children a `TraceAndMeasure` keeps, looked up once per (method, route, status): bounded by
# the routes × methods × statuses an app can answer; past it, `labels()` is called per request as before.
SERIES_CACHED_MAX = 4096


class TraceAndMeasure:
    """Pure ASGI: the request's trace id (the server span's while tracing is on, else `X-Trace-Id`, else W3C
    `traceparent`, else a new one) bound to every log line of the request and sent back as `X-Trace-Id`, and the
    `juhe_http_requests_total` / `juhe_http_request_duration_seconds` series per route.

    Plain ASGI in the request's own task, not Starlette's `BaseHTTPMiddleware` (`@app.middleware("http")`), which
    runs the endpoint in a second task and re-streams the response through memory streams: that cost ~0.45 ms of
    CPU per request in every service, on every hop of a payment (docs/performance.md, "Fifth pass: the common
    path"). The labelled children are cached because `labels()` takes a lock and builds its key on every call."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
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
            if status:  # an answer was started (an unhandled crash is answered by the outer ServerErrorMiddleware)
                route_path = getattr(scope.get("route"), "path", "unmatched")
                requests, seconds = self._children(scope["method"], route_path, status[0])
                requests.inc()
                seconds.observe(time.perf_counter() - started)


def install_observability(app: FastAPI, service: str) -> None:
    """Trace ids and the HTTP metrics (`TraceAndMeasure`), outside every middleware added before it."""
    app.add_middleware(TraceAndMeasure, service=service)


def _from_traceparent(value: str | None) -> str | None:
    # W3C traceparent: version-traceid-parentid-flags
    if value and value.count("-") == 3:
        return value.split("-")[1]
    return None


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(runtime: RuntimeDep) -> Response:
        checks = {"database": await _check_database(runtime), "broker": await _check_broker(runtime)}
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _check_database(runtime: Runtime) -> str:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {exc!r}"[:200]


async def _check_broker(runtime: Runtime) -> str:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            if runtime._kafka_client is None:
                client = AIOKafkaClient(bootstrap_servers=runtime.settings.kafka_bootstrap_servers)
                await client.bootstrap()
                runtime._kafka_client = client
            await runtime._kafka_client.fetch_all_metadata()
        return "ok"
    except Exception as exc:
        if runtime._kafka_client is not None:
            await close_bounded(runtime._kafka_client.close(), name="readiness broker client")
            runtime._kafka_client = None
        return f"error: {exc!r}"[:200]


def worker_tasks(
    runtime: Runtime,
    subscriptions: Sequence[Subscription],
    background: Sequence[BackgroundTask],
    consumer_groups: Sequence[ConsumerGroup] = (),
) -> list[Callable[[], Awaitable[None]]]:
    """The long-running loops of a service's worker: epoch watcher, relay, consumers (the default group's and one
    per `consumer_groups`), its own loops."""
    s = runtime.settings
    kafka_options = KafkaOptions.from_settings(s)
    watcher = EpochWatcher(
        s.kafka_bootstrap_servers, interval_seconds=s.broker_epoch_check_interval_seconds, options=kafka_options
    )
    runtime.epoch_watcher = watcher
    wakeups = runtime.wakeups = Wakeups(runtime.engine)
    relay = OutboxRelay(
        runtime.engine,
        service=s.service_name,
        bootstrap=s.kafka_bootstrap_servers,
        epoch_watcher=watcher,
        topic_namespace=s.topic_namespace,
        batch_max=s.outbox_batch_max,
        poll_interval_seconds=s.outbox_poll_interval_seconds,
        retention_hours=s.outbox_retention_hours,
        kafka_options=kafka_options,
        wakeups=wakeups,
    )
    loops: list[Callable[[], Awaitable[None]]] = [wakeups.run, watcher.run, relay.run]
    groups = [(f"juhe-{s.service_name}", subscriptions)] if subscriptions else []
    groups += [(f"juhe-{s.service_name}-{g.name}", g.subscriptions(runtime)) for g in consumer_groups]
    for group_id, group_subscriptions in groups:
        consumer = InboxConsumer(
            runtime.uow,
            service=s.service_name,
            bootstrap=s.kafka_bootstrap_servers,
            group_id=f"{s.topic_namespace}{group_id}",
            subscriptions=group_subscriptions,
            epoch_watcher=watcher,
            topic_namespace=s.topic_namespace,
            batch_max=s.consumer_batch_max,
            session_timeout_ms=s.consumer_session_timeout_ms,
            heartbeat_interval_ms=s.consumer_heartbeat_interval_ms,
            fetch_max_wait_ms=s.consumer_fetch_max_wait_ms,
            handler_attempts_max=s.consumer_handler_attempts_max,
            kafka_options=kafka_options,
        )
        loops.append(consumer.run)
    loops.extend(functools.partial(task, runtime) for task in background)
    return loops


async def run_rounds(
    name: str,
    round_once: Callable[[], Awaitable[object]],
    *,
    interval_seconds: float,
    batch_max: int | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wake: Waiter | None = None,
) -> None:
    """A worker's polling loop: one round, then sleep `interval_seconds` — at once again instead when the
    round returned `batch_max` or more (a full batch means more is waiting). A round that found nothing to do
    (returned 0) doubles the sleep, up to `idle_delay_max(interval_seconds)`; one that did something, or whose
    answer is not a count, comes back to the interval. A failed round (a bad row, a dependency down) is logged
    and retried after the interval, so the loop itself never dies of it; cancellation (shutdown) goes through.

    With `wake` (libs.common.wakeups: a NOTIFY from the transaction that created the work) the sleep after an
    idle round ends as soon as work arrives, and while the process's listener is connected it grows up to
    `WOKEN_IDLE_DELAY_SECONDS` instead; while it is not, the loop polls as without `wake`. After a round that did
    something the loop still sleeps its interval whatever arrives, so a busy spell's work is taken in batches as
    before (not a round per NOTIFY); what arrived meanwhile is in the next round."""
    delay = interval_seconds
    while True:
        raise_if_cancelled()  # a cancel some client's close swallowed still ends the loop (libs.common.tasks)
        if wake is not None:
            woken = wake.event.is_set()
            wake.event.clear()  # a NOTIFY during this round sets it again: the next sleep then ends at once
            if woken:
                delay = interval_seconds  # new work: what else is due comes soon after (retries, the next step)
        try:
            done = await round_once()
        except Exception:
            log.exception("worker round failed", round=name)
            done = None
        full = batch_max is not None and isinstance(done, int) and done >= batch_max
        idle = isinstance(done, int) and not isinstance(done, bool) and done == 0
        longest = woken_idle_delay_max(interval_seconds) if wake is not None and wake.listening else None
        delay = min(delay * 2, longest or idle_delay_max(interval_seconds)) if idle else interval_seconds
        # After a full batch only yield to the other tasks (the API shares this event loop), never wait.
        if full or wake is None or not idle:
            await sleep(0 if full else delay)
        else:
            # asyncio.timeout, not wait_for: 3.11's wait_for can drop a cancel that races the event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.event.wait()


# An idle loop's sleep grows to at most this many times its interval, and only up to IDLE_DELAY_CAP_SECONDS: the
# platform's ~20 loops polling their tables every 0.5-2 s were a large part of its CPU at rest
# (docs/performance.md), while work found after an idle spell waits at most a few seconds more. Loops of a
# longer interval (a minute) are not spaced out at all.
IDLE_BACKOFF_FACTOR_MAX = 4
IDLE_DELAY_CAP_SECONDS = 4.0


def idle_delay_max(interval_seconds: float) -> float:
    """The longest sleep of an idle loop whose interval is `interval_seconds` (never shorter than the interval)."""
    return max(interval_seconds, min(interval_seconds * IDLE_BACKOFF_FACTOR_MAX, IDLE_DELAY_CAP_SECONDS))


# The longest idle sleep of a loop woken by its work (`run_rounds(wake=...)`) while the listener is connected: new
# work wakes it at once, so this only bounds how late work that became due by time (a retry) or was created without
# a NOTIFY is found (docs/performance.md, "Fifth pass").
WOKEN_IDLE_DELAY_SECONDS = 30.0


def woken_idle_delay_max(interval_seconds: float) -> float:
    """The longest sleep of an idle loop that its work wakes (never shorter than the interval)."""
    return max(interval_seconds, WOKEN_IDLE_DELAY_SECONDS)


@dataclass(frozen=True)
class WorkerLoop(Generic[ContextT]):
    """One polling loop of a worker, declared as data (the worker's list of them, `loop_tasks`): `round_once` runs
    one round on the service's typed context (a count of what it did, as `run_rounds` reads it); the interval and
    the full-batch size are read from the context's settings when the loop starts."""

    name: str
    round_once: Callable[[ContextT], Awaitable[object]]
    interval_seconds: Callable[[ContextT], float]
    batch_max: Callable[[ContextT], int] | None = None
    # The work queue whose NOTIFY wakes the loop (a trigger on its table, libs.common.wakeups); None: the clock only.
    wake: str | None = None


def loop_tasks(context: Callable[[Runtime], ContextT], loops: Sequence[WorkerLoop[ContextT]]) -> list[BackgroundTask]:
    """The background tasks of a worker's declared loops: each fetches the typed context (`context`, the service's
    accessor; the start-up hook has built it by then) and runs its rounds with `run_rounds`, idle back-off and
    all. A service then writes no loop function of its own."""

    def task(loop: WorkerLoop[ContextT]) -> BackgroundTask:
        async def run(runtime: Runtime) -> None:
            ctx = context(runtime)
            await run_rounds(
                loop.name,
                functools.partial(loop.round_once, ctx),
                interval_seconds=loop.interval_seconds(ctx),
                batch_max=None if loop.batch_max is None else loop.batch_max(ctx),
                wake=work_waiter(runtime, loop.wake),
            )

        return run

    return [task(loop) for loop in loops]


def work_waiter(runtime: Runtime, queue: str | None) -> Waiter | None:
    """The waiter of the work queue `queue` on this process's listener (None without a queue or a worker)."""
    return None if queue is None or runtime.wakeups is None else runtime.wakeups.waiter(queue)


async def _supervise(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Keep a worker loop alive: log and restart it if it ever crashes."""
    while True:
        raise_if_cancelled()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker loop crashed; restarting", loop=name)
            await asyncio.sleep(1)


# FastAPI's own OpenTelemetry layer (FastAPI >= 0.16x) off: Juhe traces through `libs.common.tracing` (the
# OpenTelemetry FastAPI instrumentation, when an OTLP endpoint is set), and FastAPI's layer then steps aside for it;
# with tracing off no provider is configured and it records nothing either. So it never produced a span, a metric or
# a log line here, yet asked on every request whether any of its three global providers was configured (an
# environment lookup each): ~8 us of CPU per request in every service (docs/performance.md, "Sixth pass: the edges").
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    subscriptions: Sequence[Subscription] = (),
    background: Sequence[BackgroundTask] = (),
    consumer_groups: Sequence[ConsumerGroup] = (),
    on_startup: Callable[[Runtime], Awaitable[None]] | None = None,
    description: str = "",
    refuse_unstorable_text: bool = True,
) -> FastAPI:
    """Every service's application. `refuse_unstorable_text=False` only for an app that applies the boundary
    text rule itself at a better place (the gateway: after its body-size and authentication checks)."""
    configure_logging(settings.service_name, level=settings.log_level, json=settings.log_json)
    tracing.setup_tracing(settings.service_name)  # nothing unless OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url, pool_size=settings.database_pool_size, max_overflow=settings.database_pool_overflow
        )
        runtime = Runtime(settings=settings, engine=engine, uow=UnitOfWork(engine, source=settings.service_name))
        app.state.runtime = runtime
        if on_startup is not None:
            await on_startup(runtime)
        tasks: list[asyncio.Task[None]] = []
        if settings.role in ("worker", "all"):
            for i, loop in enumerate(worker_tasks(runtime, subscriptions, background, consumer_groups)):
                name = f"{settings.service_name}-{i}"
                tasks.append(asyncio.create_task(_supervise(name, loop), name=name))
        log.info("service started", role=settings.role, port=settings.port)
        try:
            yield
        finally:
            # Bounded and sure (libs.common.tasks): a cancel that a client's close swallowed is sent again.
            for task in tasks:
                await stop_task(task, name=task.get_name())
            if runtime._kafka_client is not None:
                await close_bounded(runtime._kafka_client.close(), name="readiness broker client")
            for closer in runtime.closers:
                with contextlib.suppress(Exception):
                    await closer()
            await engine.dispose()

    # No slash redirects: a 307 to `http://<internal host:port>/…` would leak the service's address through
    # the gateway; `/v1/x/` is simply not a route (404 problem+json).
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        redirect_slashes=False,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    install_problem_handlers(app)
    if refuse_unstorable_text:
        app.add_middleware(UnstorableTextGuard)  # inside the observability middleware added next
    install_observability(app, settings.service_name)
    tracing.instrument_app(app)  # the server span around everything (a no-op while tracing is off)
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    return app
