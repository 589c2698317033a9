"""The ledger's typed context: its settings and the process's batching writer, built once at start-up.

Routes reach it through `api/deps.py` (`LedgerContextDep`, `WriterDep`, `SettingsDep`), the worker's loops and
consumers through `ledger_context(runtime)`; a field here replaces a string-keyed lookup, so a missing dependency
fails type checking, not a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.common.web import Runtime, context_of
from services.ledger.config import Settings
from services.ledger.store.writer import LedgerWriter


@dataclass(frozen=True)
class LedgerContext:
    settings: Settings
    # The one write path of this process (store/writer.py, docs/ledger.md §4): every transfer, from the API, the
    # consumers and the worker's loops, is batched by it. Started by the start-up hook, stopped with the service.
    writer: LedgerWriter


def build_ledger_context(runtime: Runtime, settings: Settings) -> LedgerContext:
    """What the start-up hook sets as `runtime.context`; the caller starts the writer and registers its stop among
    the closers."""
    writer = LedgerWriter(
        runtime.uow,
        batch_transfers_max=settings.write_batch_transfers_max,
        queue_transfers_max=settings.write_queue_transfers_max,
        batch_attempts_max=settings.write_batch_attempts_max,
        lock_timeout_seconds=settings.write_lock_timeout_seconds,
    )
    return LedgerContext(settings=settings, writer=writer)


def ledger_context(runtime: Runtime) -> LedgerContext:
    return context_of(runtime, LedgerContext)
