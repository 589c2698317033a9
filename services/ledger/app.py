"""Wiring of the ledger service: routers, its typed context (the batching writer), consumer groups, background loops."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.ledger import worker
from services.ledger.api.routes import accounts, transfers
from services.ledger.config import Settings
from services.ledger.context import build_ledger_context
from services.ledger.wallet.api.routes import imports, wallet
from services.ledger.wallet.api.routes import kyc as wallet_kyc
from services.ledger.wallet.api.routes import topup as wallet_topup


def create_app(settings: Settings) -> FastAPI:
    async def start_writer(runtime: Runtime) -> None:
        # The cyclic collector is tuned for every service where it starts serving (libs/common/runner.py `tune_gc`:
        # the start-up heap frozen, young objects collected every 50,000 allocations), the batch writer included.
        context = build_ledger_context(runtime, settings)
        context.writer.start()
        runtime.context = context
        runtime.closers.append(context.writer.stop)

    return create_service_app(
        settings,
        title="Juhe ledger",
        routers=[
            accounts.router,
            transfers.router,
            wallet.router,
            wallet_kyc.router,
            wallet_topup.router,
            imports.router,
        ],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        consumer_groups=worker.consumer_groups(settings),
        on_startup=start_writer,
    )
