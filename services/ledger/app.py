"""Wiring of the ledger service: routers, the batching writer, subscriptions, background loops."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.ledger import worker
from services.ledger.api.deps import WRITER_EXTRA
from services.ledger.api.routes import accounts, transfers
from services.ledger.config import Settings
from services.ledger.store.writer import LedgerWriter


def create_app(settings: Settings) -> FastAPI:
    async def start_writer(runtime: Runtime) -> None:
        writer = LedgerWriter(
            runtime.uow,
            batch_transfers_max=settings.write_batch_transfers_max,
            queue_transfers_max=settings.write_queue_transfers_max,
            batch_attempts_max=settings.write_batch_attempts_max,
            lock_timeout_seconds=settings.write_lock_timeout_seconds,
        )
        writer.start()
        runtime.extras[WRITER_EXTRA] = writer
        runtime.extras.setdefault("closers", []).append(writer.stop)

    return create_service_app(
        settings,
        title="Juhe ledger",
        routers=[accounts.router, transfers.router],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=start_writer,
    )
