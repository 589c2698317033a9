"""Wiring of the gateway service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from gateway import worker
from gateway.config import Settings
from libs.common.web import create_service_app


def create_app(settings: Settings) -> FastAPI:
    return create_service_app(
        settings,
        title="Juhe gateway",
        routers=[],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
    )
