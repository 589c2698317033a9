"""uvicorn's server, waking once a second at rest instead of ten times (docs/performance.md, "Fifth pass: the idle
platform", the coordinator's follow-up).

uvicorn's `Server.main_loop` sleeps 0.1 s at a time to see whether it should exit and, every tenth tick, to refresh
the `Date` header it sends: measured alone, a bare FastAPI app under stock uvicorn used ~0.2 % of a core doing
nothing, against ~0.03 % ticking once a second — and the platform runs nine such processes, at an idle goal of 3 %
for everything. `QuietServer` ticks once a second (the `Date` header is still refreshed every second, as
`on_tick` does it every tenth tick of 0.1 s) and wakes at once when a signal asks it to stop, so SIGTERM and Ctrl-C
stop it as promptly as before. In-process test servers keep the stock server (they stop by `should_exit`, with no
signal to wake the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

TICK_SECONDS = 1.0
# uvicorn's on_tick counts ticks of 0.1 s and refreshes the Date header when the count is a multiple of 10.
_UVICORN_TICKS_PER_TICK = 10
_UVICORN_COUNTER_WRAP = 864000


class QuietServer(uvicorn.Server):
    """`uvicorn.Server` whose main loop wakes every `TICK_SECONDS`, or at once on a stop signal."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_signalled: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_signalled = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _UVICORN_TICKS_PER_TICK) % _UVICORN_COUNTER_WRAP
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._stop_signalled.wait()
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # The signal handler runs between two bytecodes of the loop's thread: hand the wake-up to the loop.
        if self._loop is not None and self._stop_signalled is not None:
            self._loop.call_soon_threadsafe(self._stop_signalled.set)


def serve_app(config: uvicorn.Config) -> None:
    """`uvicorn.run` for an app built already, with `QuietServer`: exit status 3 when it could not start (as
    `uvicorn.run`)."""
    server = QuietServer(config)
    server.run()
    if not server.started:
        raise SystemExit(3)
