"""Fault injection: make a sandbox fail, slow down or go dark, on demand from the control API.

`dark` means the server **hangs**: it reads the request, never answers, and keeps the connection
open until the client gives up (its timeout) and disconnects, or `dark_hang_seconds_max` passes.
That is what a black-holed channel looks like to a connector (a timeout, not a refusal), and it
needs no access to the socket from inside ASGI. Faults apply only to channel paths; the control
API, health probes and the pay page always answer so a test can switch the fault off again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DARK_HANG_SECONDS_MAX = 600.0
LATENCY_MS_MAX = 120_000
UNFAULTED_PREFIXES = ("/control", "/livez", "/readyz", "/pay/")
PUBLIC_FIELDS = ("error_rate", "latency_ms", "dark", "duplicate_notifications", "out_of_order_notifications", "seed")


@dataclass(slots=True)
class FaultSettings:
    """Mutable fault switches; one instance per sandbox process (reset on restart, by design)."""

    error_rate: float = 0.0  # 0..1: share of channel requests answered with the channel's system error
    latency_ms: int = 0  # added before every channel request is handled
    dark: bool = False  # hang without answering (see module docstring)
    duplicate_notifications: bool = False  # deliver every notification twice (after it was acknowledged)
    out_of_order_notifications: bool = False  # hold each notification until the next one has been sent
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update atomically (all or nothing); re-seeds the RNG when `seed` is given
        so a test run is repeatable."""
        with self._lock:
            merged = {name: getattr(self, name) for name in PUBLIC_FIELDS}
            merged.update({k: v for k, v in changes.items() if k in PUBLIC_FIELDS and v is not None})
            if not 0.0 <= merged["error_rate"] <= 1.0:
                raise ValueError("error_rate must be within 0..1")
            if not 0 <= merged["latency_ms"] <= LATENCY_MS_MAX:
                raise ValueError(f"latency_ms must be within 0..{LATENCY_MS_MAX}")
            for name, value in merged.items():
                setattr(self, name, value)
            if changes.get("seed") is not None:
                self._rng.seed(self.seed)

    def should_fail(self) -> bool:
        with self._lock:
            if self.error_rate <= 0.0:
                return False
            return self._rng.random() < self.error_rate

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PUBLIC_FIELDS}


def default_is_faulted_path(path: str) -> bool:
    return not path.startswith(UNFAULTED_PREFIXES)


class FaultMiddleware:
    """Pure ASGI middleware (no body buffering) applying latency, dark and error-rate faults.

    `error_response` builds the channel's own system-error reply (e.g. a signed WeChat 500
    SYSTEM_ERROR, an Alipay `20000` body), so connectors see the real shape of a failure.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: FaultSettings,
        error_response: Callable[[], Response],
        is_faulted_path: Callable[[str], bool] = default_is_faulted_path,
        dark_hang_seconds_max: float = DARK_HANG_SECONDS_MAX,
    ) -> None:
        self.app = app
        self.faults = faults
        self.error_response = error_response
        self.is_faulted_path = is_faulted_path
        self.dark_hang_seconds_max = dark_hang_seconds_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_faulted_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.dark:
            await self._hang_until_disconnect(receive)
            return
        if self.faults.should_fail():
            await self.error_response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _hang_until_disconnect(self, receive: Receive) -> None:
        async def drain() -> None:
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    return

        # Returning without a response after the client left is fine: nobody is listening.
        # If the client never leaves, uvicorn answers 500 after the cap; that is logged, not hidden.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), timeout=self.dark_hang_seconds_max)
