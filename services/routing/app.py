"""Wiring of the routing service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import create_service_app
from services.routing import worker
from services.routing.config import Settings


def create_app(settings: Settings) -> FastAPI:
    return create_service_app(
        settings,
        title="Juhe routing",
        routers=[],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
    )
