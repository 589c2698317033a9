"""Wiring of the ledger service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import create_service_app
from services.ledger import worker
from services.ledger.api.routes import accounts
from services.ledger.config import Settings


def create_app(settings: Settings) -> FastAPI:
    return create_service_app(
        settings,
        title="Juhe ledger",
        routers=[accounts.router],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
    )
