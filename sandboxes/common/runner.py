"""Run a sandbox app with uvicorn on 127.0.0.1 and the port named by an environment variable, and the
lifespan every sandbox app shares."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from sandboxes.common.notify import NotificationDispatcher
from sandboxes.common.store import DocumentStore

GRACEFUL_SHUTDOWN_SECONDS = 2  # dark requests hang; do not let them block a restart
# Every sandbox app's `FastAPI(telemetry=...)`: FastAPI's own OpenTelemetry layer off. A sandbox stands for the outside
# world and exports no telemetry (nothing in its process configures a provider), yet the layer asked on every request
# whether one of its three global providers was configured, an environment lookup each: ~3-6 us of CPU per request
# (docs/performance.md, "Seventh pass: the sandboxes").
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def serve(app: FastAPI, *, port_env: str, default_port: int, host_env: str | None = None) -> None:
    host = os.environ.get(host_env, "127.0.0.1") if host_env else "127.0.0.1"
    port = int(os.environ.get(port_env, str(default_port)))
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=os.environ.get("JUHE_SANDBOX_LOG_LEVEL", "warning"),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def dispatching_lifespan(
    dispatcher: NotificationDispatcher, store: DocumentStore
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: its notifications go out while it serves; then the dispatcher stops and the store
    closes, in that order (a last delivery may still record itself), even if the app failed."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop()
            store.close()

    return lifespan
