"""Run a sandbox app with uvicorn on 127.0.0.1 and the port named by an environment variable."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

GRACEFUL_SHUTDOWN_SECONDS = 2  # dark requests hang; do not let them block a restart


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
