"""Real HTTP servers for tests: uvicorn on a free 127.0.0.1 port, in a background thread."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn

from libs.common.embedded import free_port
from libs.common.testing.waiting import eventually_sync

START_TIMEOUT_SECONDS = 20.0


class ThreadServer:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadServer:
        self.thread.start()
        eventually_sync(
            lambda: self.server.started or not self.thread.is_alive(),
            "the test server started or its thread ended",
            timeout_seconds=START_TIMEOUT_SECONDS,
            poll_seconds=0.02,
        )
        if not self.server.started:
            raise RuntimeError("test server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
