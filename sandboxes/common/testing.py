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
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

STARTUP_TIMEOUT_SECONDS = 120.0  # a loaded 2-core machine starts a sandbox in seconds, not always in 30
STOP_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


class SandboxProcess:
    """`python -m <module>` on a free port; waits for /readyz; terminates on exit."""

    def __init__(
        self, module: str, *, port_env: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.module = module
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **(env or {}), port_env: str(self.port)}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SandboxProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=repo_root(),
            env=self._env,
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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class CallbackReceiver:
    """A real HTTP server standing in for a merchant's notify URL: records every POST (path, headers,
    raw body) and answers `reply_status`/`reply_body`, so a test can hand what a channel sent to a
    public SDK's own verify function exactly as a merchant's web framework would.

    `replies(path, n)` → (status, body), when given, answers the n-th POST (from 0) to that path instead:
    a scripted merchant that refuses twice and then acknowledges tests a channel's retry schedule. Every
    body is also kept in arrival order in `bodies`, for tests that count deliveries."""

    def __init__(
        self,
        *,
        reply_status: int = 200,
        reply_body: bytes = b"",
        replies: Callable[[str, int], tuple[int, bytes]] | None = None,
    ) -> None:
        import queue
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        self.bodies: list[bytes] = []
        counts: dict[str, int] = {}
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    index = counts.get(self.path, 0)
                    counts[self.path] = index + 1
                    receiver.bodies.append(body)
                receiver.received.put((self.path, dict(self.headers.items()), body))
                status, data = replies(self.path, index) if replies else (reply_status, reply_body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._pending: list[tuple[str, dict[str, str], bytes]] = []

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def next(self, name: str, *, timeout_seconds: float = 20.0) -> tuple[dict[str, str], bytes]:
        """The first not yet taken callback sent to `url(name)`, waiting for it up to the timeout."""
        import queue

        deadline = time.monotonic() + timeout_seconds
        while True:
            for index, (path, headers, body) in enumerate(self._pending):
                if path == "/" + name:
                    del self._pending[index]
                    return headers, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no callback to /{name} within {timeout_seconds}s")
            try:
                self._pending.append(self.received.get(timeout=remaining))
            except queue.Empty:
                continue

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
