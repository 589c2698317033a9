"""Wiring of the marketing service: routers, subscriptions, background loops. No logic here."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.web import Runtime, create_service_app
from services.marketing import worker
from services.marketing.api.routes import (
    channel_coupons,
    coupons,
    imports,
    points,
    redemptions,
    rewards,
    stocks,
    topups,
)
from services.marketing.config import Settings
from services.marketing.context import build_marketing_context
from services.marketing.events import consumers


def create_app(settings: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        context = build_marketing_context(settings)
        runtime.context = context
        runtime.closers.append(context.cashier.aclose)

    return create_service_app(
        settings,
        title="Juhe marketing",
        routers=[
            stocks.router,
            coupons.router,
            redemptions.internal,
            redemptions.in_store,
            points.router,
            topups.router,
            imports.router,
            channel_coupons.router,
            channel_coupons.internal,
            rewards.router,
        ],
        subscriptions=consumers.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=on_startup,
    )
