"""`QuietServer` (libs/common/server.py): uvicorn's server ticking once a second still serves, sends its `Date`
header, and stops cleanly on SIGTERM (its lifespan's shutdown runs; the process then ends by the signal, as
uvicorn re-raises it) — the stop signal wakes its main loop rather than waiting for a tick."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import httpx

from libs.common.embedded import free_port
from libs.common.testing.waiting import eventually_sync

SERVED = textwrap.dedent(
    """
    import contextlib
    import sys
    from collections.abc import AsyncIterator

    import uvicorn
    from fastapi import FastAPI

    from libs.common.server import serve_app

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        print("shut down", flush=True)


    app = FastAPI(lifespan=lifespan)


    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}


    serve_app(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, lifespan="on"))
    """
)


def test_a_quiet_server_serves_with_a_date_header_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVED, str(port)], stdout=subprocess.PIPE, text=True)
    try:

        def answered() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
            except httpx.TransportError:
                return None

        answer = eventually_sync(answered, "the quiet server to answer", timeout_seconds=60)
        assert answer.json() == {"pong": "yes"}
        assert answer.headers["date"].endswith(" GMT")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert "shut down" in output
        assert process.returncode == -signal.SIGTERM  # uvicorn re-raises the signal it handled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
