"""Test-side helpers behind the plugin's fixtures: infra handle, in-process apps, service subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from libs.common.db import asyncpg_dsn
from libs.common.embedded import free_port, parent_death_signal
from libs.common.services import REPO_ROOT, ServiceSpec, service_env

# Bounds, not waits: a quiet machine is ready in seconds. A busy one (two suites at once, load ≈ 40) has been
# seen taking over a minute for a restarted service, and a /readyz answer (database + broker checks) over 1 s.
READY_TIMEOUT_SECONDS = 180.0
READY_PROBE_TIMEOUT_SECONDS = 5.0
SERVE_START_TIMEOUT_SECONDS = 30.0
SERVE_SHUTDOWN_TIMEOUT_SECONDS = 20.0
SERVE_CANCEL_TIMEOUT_SECONDS = 5.0

_log = logging.getLogger(__name__)

# Short group joins and fast relays for tests (docs/embedded-infra.md §2.3: Tansu holds a join for session/2).
TEST_TIMINGS: dict[str, Any] = {
    "consumer_session_timeout_ms": 3000,
    "consumer_heartbeat_interval_ms": 500,
    "outbox_poll_interval_seconds": 0.2,
    "broker_epoch_check_interval_seconds": 0.5,
}


@dataclass
class Infra:
    server_url: str
    bootstrap: str
    root: Path
    created_databases: list[str] = field(default_factory=list)

    async def drop_created_databases(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(asyncpg_dsn(self.server_url))
        try:
            for name in reversed(self.created_databases):
                with contextlib.suppress(Exception):
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def run_app_in_process(
    app: Any, *, shutdown_timeout_seconds: float = SERVE_SHUTDOWN_TIMEOUT_SECONDS
) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (its worker loops included) in this event loop; yield a client calling it
    in-process. The shutdown is bounded like `serve_app`'s: a hang fails loudly with the pending tasks."""
    label = str(getattr(app, "title", "") or type(app).__name__)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            yield client
    finally:
        stop = asyncio.create_task(lifespan.__aexit__(None, None, None), name=f"shutdown {label}")
        await _stop_bounded(stop, label, shutdown_timeout_seconds)


@contextlib.asynccontextmanager
async def serve_app(
    app: Any,
    *,
    port: int | None = None,
    name: str | None = None,
    start_timeout_seconds: float = SERVE_START_TIMEOUT_SECONDS,
    shutdown_timeout_seconds: float = SERVE_SHUTDOWN_TIMEOUT_SECONDS,
) -> AsyncIterator[str]:
    """Serve an ASGI app in this event loop under a real uvicorn server on 127.0.0.1; yield its base URL.

    For tests where something outside the process (a sandbox calling back, another service) must reach the
    app over real HTTP, while the test still reaches into the app's in-process state. Lifespan is on, so the
    app's worker loops run. Pass `port` when the URL must be known before the app is built (callback URLs).

    Both ends are bounded. Start: a server that stops or hangs while starting fails the test with its name
    instead of waiting forever. Shutdown: the components stop themselves within bounds (libs.common.tasks;
    the hang once seen here was a cancel swallowed inside aiokafka's client close, libs/common/README.md
    "Shutdown"); should one still hang, after `shutdown_timeout_seconds` the server task is cancelled rather
    than stalling the whole suite, and a warning naming the app and listing where every task waits (logged,
    and in pytest's warnings summary) keeps it visible instead of hiding it.
    """
    port = free_port() if port is None else port
    label = name or str(getattr(app, "title", "") or type(app).__name__)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_config=None, log_level="warning", access_log=False
        )
    )

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits on a failed startup; in a task that would stop the loop
            raise RuntimeError(f"{label} failed to start on port {port} (exit {exc.code})") from None

    task = asyncio.create_task(serve(), name=f"serve {label}")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + start_timeout_seconds
        while not server.started:  # uvicorn has no "started" event to wait on
            if task.done():
                task.result()  # its own error, if it has one
                raise RuntimeError(f"{label} stopped while starting")
            if loop.time() > deadline:
                raise RuntimeError(f"{label} did not start within {start_timeout_seconds}s")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await _stop_bounded(task, label, shutdown_timeout_seconds)


async def _stop_bounded(task: asyncio.Task[None], label: str, timeout_seconds: float) -> None:
    """Wait for a server (or lifespan shutdown) task that was told to exit; past the bound, warn with the
    pending tasks and cancel it (see `serve_app`)."""
    done, _ = await asyncio.wait({task}, timeout=timeout_seconds)
    if done:
        await task  # re-raises what the server raised, as a plain `await task` would
        return
    message = (
        f"{label}: in-process app did not shut down within {timeout_seconds}s; cancelled; "
        f"tasks still pending:\n{_pending_tasks()}"
    )
    _log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=SERVE_CANCEL_TIMEOUT_SECONDS)
    if done and not task.cancelled() and task.exception() is not None:
        _log.warning("%s: server task ended with %r after cancel", label, task.exception())


class ServiceProcess:
    """One Juhe service as a real process, on a free port, logging to a file."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: dict[str, Any],
        *,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.spec = spec
        self.settings = {"port": free_port(), "env": "test", **settings}
        self.port = int(self.settings["port"])
        self.log_path = log_dir / f"{spec.name}-{self.port}.log"
        self.extra_env = extra_env or {}
        self.ready_path = ready_path  # "/livez" for an API-only process run without a broker (benchmarks)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, extra_env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "JUHE_CRASH_AT"}
        env.update(service_env(self.spec, self.settings))
        env.update(self.extra_env)
        env.update(extra_env or {})
        env["PYTHONPATH"] = str(REPO_ROOT)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.spec.module],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        log.close()
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                probe = httpx.get(f"{self.base_url}{self.ready_path}", timeout=READY_PROBE_TIMEOUT_SECONDS)
                if probe.status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.spec.name} not ready in {timeout_seconds}s:\n{self.log_tail()}")

    def wait_exit(self, timeout_seconds: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout_seconds)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _pending_tasks() -> str:
    """Where every other task of the loop is waiting (the `await` chain, outermost first): what a hung
    shutdown is waiting for. Follows coroutines and async generators (an `async with` on an
    `@asynccontextmanager` awaits the generator's `asend`, which has no frame of its own)."""
    lines = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        # `cancelling` > 0 on a task still running its normal loop: it was cancelled and something swallowed it.
        lines.append(
            f"  {task.get_name()} (cancelling={task.cancelling()}): {' -> '.join(await_chain(task.get_coro()))}"
        )
    return "\n".join(lines)


def await_chain(awaited: Any) -> list[str]:
    """`file:line function` of each coroutine or async generator in an await chain, outermost first."""
    chain: list[str] = []
    for _ in range(200):  # a chain is never this deep; the bound only guards against a cycle
        if awaited is None:
            break
        if type(awaited).__name__ == "async_generator_asend":  # only gc knows the generator behind it
            generators = [r for r in gc.get_referents(awaited) if inspect.isasyncgen(r)]
            awaited = generators[0] if generators else awaited
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:
            chain.append(repr(awaited)[:120])
            break
        chain.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) if hasattr(awaited, "cr_frame") else awaited.ag_await
    return chain
