"""`python -m sandboxes [name ...]`: every channel sandbox (or the named ones) in one process, each on its own port.

Why one process: each sandbox alone is a Python process that imports FastAPI, pydantic and its crypto at start
(~1 s of CPU) and then holds ~70 MiB at rest; `make run`'s launcher starts all six, so sharing one process
saves ~5 × that in start-up CPU and idle memory (docs/performance.md). Each sandbox keeps its own app, its
own settings (`JUHE_SANDBOX_<NAME>_…`), its own data under `JUHE_DATA_DIR` and its own port, so to a client
nothing changes; `python -m sandboxes.<name>` still runs one alone.

One SIGINT/SIGTERM stops every server (uvicorn's per-server signal capture is replaced by one handler here:
with several servers in one loop only the last one installed would hear it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from sandboxes.common.runner import GRACEFUL_SHUTDOWN_SECONDS

TICK_SECONDS = 1.0


def _wechatpay() -> FastAPI:
    from sandboxes.wechatpay.app import create_app
    from sandboxes.wechatpay.settings import SandboxSettings

    return create_app(SandboxSettings.from_env())


def _alipay() -> FastAPI:
    from sandboxes.alipay.app import create_app
    from sandboxes.alipay.settings import SandboxSettings

    return create_app(SandboxSettings.from_env())


def _unionpay() -> FastAPI:
    from sandboxes.unionpay.app import create_app
    from sandboxes.unionpay.settings import UnionPaySettings

    return create_app(UnionPaySettings.from_env())


def _ecny() -> FastAPI:
    from sandboxes.ecny.app import create_app
    from sandboxes.ecny.settings import EcnySettings

    return create_app(EcnySettings.from_env())


def _bank() -> FastAPI:
    from sandboxes.bank.app import create_app
    from sandboxes.bank.settings import BankSettings

    return create_app(BankSettings.from_env())


def _identity() -> FastAPI:
    from sandboxes.identity.app import create_app
    from sandboxes.identity.settings import IdentitySettings

    return create_app(IdentitySettings.from_env())


# name → (port variable, default port, app builder): the same as each sandbox's own __main__.
SANDBOXES: dict[str, tuple[str, int, Callable[[], FastAPI]]] = {
    "wechatpay": ("JUHE_SANDBOX_WECHATPAY_PORT", 8100, _wechatpay),
    "alipay": ("JUHE_SANDBOX_ALIPAY_PORT", 8101, _alipay),
    "unionpay": ("JUHE_SANDBOX_UNIONPAY_PORT", 8102, _unionpay),
    "ecny": ("JUHE_SANDBOX_ECNY_PORT", 8103, _ecny),
    "bank": ("JUHE_SANDBOX_BANK_PORT", 8104, _bank),
    "identity": ("JUHE_SANDBOX_IDENTITY_PORT", 8105, _identity),
}


class _SharedProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve_all` (one handler stops them all), and whose main loop wakes
    once a second at rest instead of ten times (`stop` wakes it at once): six servers ticking every 0.1 s were 60
    wake-ups a second in an idle process. uvicorn refreshes its `Date` header on every tenth 0.1 s tick, so each
    one-second tick counts ten."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):
            ticks = (ticks + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._stopping.wait()


async def serve_all(names: list[str]) -> None:
    log_level = os.environ.get("JUHE_SANDBOX_LOG_LEVEL", "warning")
    servers = []
    for name in names:
        port_env, default_port, build = SANDBOXES[name]
        config = uvicorn.Config(
            build(),
            host="127.0.0.1",
            port=int(os.environ.get(port_env, str(default_port))),
            log_level=log_level,
            # uvicorn formats each access line's arguments before its logger drops them below INFO
            access_log=log_level.lower() in ("trace", "debug", "info"),
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        servers.append(_SharedProcessServer(config))

    def stop() -> None:
        for server in servers:
            server.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    _tune_gc()
    # A server that cannot start (its port taken) exits the process: the launcher reports and restarts it.
    await asyncio.gather(*(server.serve() for server in servers))


def _tune_gc() -> None:
    """Every app is built: freeze that heap out of the cyclic collector and collect young objects every 50,000
    allocations instead of 700, as Juhe's services do (their `libs/common/runner.py`, which a sandbox may not
    import; docs/performance.md, "Sixth pass")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main(argv: list[str]) -> None:
    names = argv or list(SANDBOXES)
    unknown = [name for name in names if name not in SANDBOXES]
    if unknown:
        raise SystemExit(f"unknown sandboxes: {', '.join(unknown)} (known: {', '.join(SANDBOXES)})")
    try:
        import uvloop
    except ImportError:  # uvicorn's own default loop choice: uvloop when installed
        asyncio.run(serve_all(names))
    else:
        uvloop.run(serve_all(names))


if __name__ == "__main__":
    main(sys.argv[1:])
