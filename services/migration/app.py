"""Wiring of the migration service: the runs API, the ledger client. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import create_service_app
from services.migration import worker
from services.migration.api.routes import runs
from services.migration.config import Settings
from services.migration.flows.runtime import on_startup


def create_app(settings: Settings) -> FastAPI:
    return create_service_app(
        settings,
        title="Juhe migration",
        routers=[runs.router],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=on_startup,
    )
