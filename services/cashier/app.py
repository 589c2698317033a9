"""Wiring of the cashier service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.cashier import worker
from services.cashier.api.routes import (
    admin,
    bills,
    channel_coupons,
    checkout,
    events,
    internal,
    notify,
    payments,
    profit_sharing,
    refunds,
    webhook_endpoints,
    webhooks,
)
from services.cashier.config import Settings
from services.cashier.context import build_cashier_context


def create_app(settings: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        runtime.context = build_cashier_context(settings, runtime)

    app = create_service_app(
        settings,
        title="Juhe cashier",
        routers=[
            payments.router,
            refunds.router,
            webhooks.router,
            webhook_endpoints.router,
            events.router,
            channel_coupons.router,
            admin.router,
            bills.router,
            internal.router,
            profit_sharing.router,
            checkout.router,
        ],
        subscriptions=worker.subscriptions(settings),
        background=[*worker.background_tasks(settings), worker.run_settle_loop],
        on_startup=on_startup,
    )
    # A payment's two requests, served first and without FastAPI's per-request work: the create (a valid body; the
    # rest is `payments.create`'s) and the channel's notification (docs/performance.md, "Seventh pass: the cashier").
    app.router.routes[0:0] = [payments.FastCreateRoute(), *notify.routes()]
    return app
