"""Test-side helpers behind the plugin's fixtures: infra handle, in-process apps, service subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from libs.common.db import asyncpg_dsn
from libs.common.embedded import free_port, parent_death_signal
from libs.common.services import REPO_ROOT, ServiceSpec, service_env

READY_TIMEOUT_SECONDS = 60.0

# Short group joins and fast relays for tests (embedded-infra.md §2.3: Tansu holds a join for session/2).
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
async def run_app_in_process(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            yield client


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
                if httpx.get(f"{self.base_url}{self.ready_path}", timeout=1.0).status_code == 200:
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
