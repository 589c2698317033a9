"""`python -m services.<name>`: build settings once, then serve the app with uvicorn.

The start gate: a service process spends most of its start importing (FastAPI, SQLAlchemy, pydantic, aiokafka:
~2 s of CPU each) and building its app, none of which needs the database or the broker. The launcher therefore
starts every process first and prepares PostgreSQL, the migrations and the broker while they import; it names a
file in `JUHE_START_GATE`, and a process whose app is built waits for that file before it serves (its start-up
hook is the first thing that touches the database or the broker). Without the variable (tests, Kubernetes,
`python -m services.<name>` by hand) nothing waits (docs/performance.md, "Start-up").
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from libs.common.settings import ServiceSettings

if TYPE_CHECKING:  # the launcher imports this module for START_GATE_ENV: no FastAPI or uvicorn import there
    from fastapi import FastAPI

S = TypeVar("S", bound=ServiceSettings)

START_GATE_ENV = "JUHE_START_GATE"
START_GATE_POLL_SECONDS = 0.05
# A bound, not a wait: the launcher opens the gate after PostgreSQL, the migrations and the broker, which take a
# few seconds (minutes on a loaded box); a launcher that died meanwhile has already sent its parent-death signal.
START_GATE_TIMEOUT_SECONDS = 600.0
# CPython's cyclic collector runs a young collection every 700 net allocations of container objects, and a service
# allocates thousands per request (pydantic, SQLAlchemy rows, asyncio futures): under bench-e2e the cashier spent
# ~0.8 ms of CPU per payment collecting (86 young, 7 middle and one 39 ms full collection in a 21 s phase), with
# these settings one young collection in the same phase (~0.08 ms per payment, docs/performance.md, "Sixth pass").
# A young collection still finds any cyclic garbage within 50,000 allocations (the ledger's setting since its
# batch benchmark), so memory stays bounded: the cashier's RSS under load +5 MiB.
GC_THRESHOLDS = (50_000, 20, 20)


def wait_for_start_gate(
    gate: str | None = None,
    *,
    timeout_seconds: float = START_GATE_TIMEOUT_SECONDS,
    poll_seconds: float = START_GATE_POLL_SECONDS,
) -> None:
    """Return once the file `gate` (default: `$JUHE_START_GATE`) exists; at once when no gate is named."""
    path = gate if gate is not None else os.environ.get(START_GATE_ENV)
    if not path:
        return
    deadline = time.monotonic() + timeout_seconds
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the launcher did not open the start gate {path} within {timeout_seconds:.0f}s")
        time.sleep(poll_seconds)  # bounded polling of a condition: nothing else runs in this process yet


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Freeze what start-up built (modules, the app, its settings) out of the cyclic collector, then collect less
    often (`GC_THRESHOLDS`). Frozen objects are never walked again: a full collection then visits only what the
    process made since it started serving, and their pages stay untouched (shared with the launcher after a fork,
    libs/common/prefork.py). What start-up left as garbage is collected first."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def serve(create_app: Callable[[S], FastAPI], settings: S) -> None:
    import uvicorn

    from libs.common.server import serve_app

    app = create_app(settings)
    wait_for_start_gate()
    tune_gc()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging is configured by create_service_app
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    serve_app(config)  # uvicorn.run's server, ticking once a second at rest (libs/common/server.py)
