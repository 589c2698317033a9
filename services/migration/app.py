"""Wiring of the migration service: the runs API, its context (the ledger and marketing clients). No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.migration import worker
from services.migration.api.routes import runs
from services.migration.config import Settings
from services.migration.context import build_migration_context


def create_app(settings: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        context = build_migration_context(settings)
        runtime.context = context
        runtime.closers.append(context.aclose)

    return create_service_app(
        settings,
        title="Juhe migration",
        routers=[runs.router],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=on_startup,
    )
