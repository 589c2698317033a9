"""Helpers for tests that run a sandbox as a real server in a subprocess.

Usage:
    with SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT",
                        env={"JUHE_DATA_DIR": str(tmp)}) as sandbox:
        httpx.get(sandbox.base_url + "/readyz")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


class SandboxProcess:
    """`python -m <module>` on a free port; waits for /readyz; terminates on exit."""

    def __init__(self, module: str, *, port_env: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.module = module
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **(env or {}), port_env: str(self.port)}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SandboxProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module], cwd=repo_root(), env=self._env,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self._process.returncode}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.module} not ready within {STARTUP_TIMEOUT_SECONDS}s")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
