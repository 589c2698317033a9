"""Wiring of the routing service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.routing import worker
from services.routing.api.routes import (
    channel_routes,
    contracts,
    decide,
    fee_rates,
    rules,
    settings,
    simulations,
    special_rates,
)
from services.routing.config import Settings
from services.routing.context import build_routing_context


def create_app(settings_: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        runtime.context = build_routing_context(settings_, runtime)

    app = create_service_app(
        settings_,
        title="Juhe routing",
        description="Chooses the channel route for each payment attempt: cost, success rate, health, rules.",
        routers=[
            decide.router,
            channel_routes.router,
            fee_rates.router,
            contracts.router,
            rules.router,
            settings.router,
            special_rates.router,
            simulations.router,
        ],
        subscriptions=worker.subscriptions(settings_),
        background=worker.background_tasks(settings_),
        on_startup=on_startup,
    )
    # The cashier's call on every create, served first and without FastAPI's per-request work for a valid body.
    app.router.routes.insert(0, decide.fast_methods_route())
    return app
