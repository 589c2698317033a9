"""Wiring of the settlement service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.settlement import worker
from services.settlement.api.routes import (
    admin,
    consistency,
    cycles,
    exceptions,
    internal,
    merchant,
    payouts,
    reconciliation,
)
from services.settlement.config import Settings
from services.settlement.context import build_settlement_context


def create_app(settings: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        runtime.context = build_settlement_context(runtime, settings)

    return create_service_app(
        settings,
        title="Juhe settlement",
        routers=[
            admin.router,
            reconciliation.router,
            exceptions.router,
            cycles.router,
            merchant.router,
            payouts.router,
            internal.router,
            consistency.router,
        ],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=on_startup,
    )
