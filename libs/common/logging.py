"""JSON structured logs with the trace id bound to every line of a request or an event's handling."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from contextvars import ContextVar

import structlog
import uuid_utils

trace_id_var: ContextVar[str | None] = ContextVar("juhe_trace_id", default=None)

TRACE_HEADER = "X-Trace-Id"


def new_trace_id() -> str:
    return uuid_utils.uuid7().hex


def current_trace_id() -> str | None:
    return trace_id_var.get()


def _add_trace_id(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    trace_id = trace_id_var.get()
    if trace_id and "trace_id" not in event_dict:
        event_dict["trace_id"] = trace_id
    return event_dict


def configure_logging(service: str, *, level: str = "INFO", json: bool = True) -> None:
    """Route stdlib and structlog through one JSON renderer on stdout (the launcher files it)."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_id,
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = structlog.processors.JSONRenderer() if json else _console_renderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            lambda _l, _m, ed: {"service": service, **ed},
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO ("HTTP Request: POST …"): several lines per payment on the hot path, each
    # rendered as JSON here and parsed again by the launcher's console (6 % of the cashier's CPU under load,
    # docs/performance.md). Failures still log at WARNING; the trace id and metrics cover the rest.
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _console_renderer() -> structlog.types.Processor:
    """The developer console's renderer, with the tracebacks structlog formats when rich is installed: structlog.dev
    is loaded again if it was first imported without rich (libs/common/__init__.py says why)."""
    if structlog.dev.rich is None and importlib.util.find_spec("rich") is not None:
        importlib.reload(structlog.dev)
    return structlog.dev.ConsoleRenderer(colors=False)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
