"""Marketing in-process on a fresh migrated database: two app instances (replicas) sharing it, and callers
that carry the gateway's signed identity for an operator, a merchant or a user."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from libs.common.events import Envelope
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.outbox_tables import outbox
from libs.common.web import Runtime
from services.marketing.app import create_app
from services.marketing.context import marketing_context
from services.marketing.events.consumers import subscriptions


@dataclass
class Marketing:
    clients: list[httpx.AsyncClient]
    runtimes: list[Runtime]
    secret: str
    offset: timedelta = timedelta(0)

    @property
    def runtime(self) -> Runtime:
        return self.runtimes[0]

    def headers(
        self,
        *,
        merchant_id: str | None = None,
        platform: str | None = None,
        user: str | None = None,
        service: str | None = None,
    ) -> dict[str, str]:
        token = mint_identity_token(
            self.secret,
            key_id="test",
            ttl_seconds=600,
            merchant_id=merchant_id,
            platform=platform,
            user=user,
            service=service,
        )
        return {IDENTITY_HEADER: token}

    def operator(self) -> dict[str, str]:
        return self.headers(platform="plt_demo")

    def merchant(self, merchant_id: str = "mch_a") -> dict[str, str]:
        return self.headers(merchant_id=merchant_id)

    def user(self, user_id: str = "usr_1") -> dict[str, str]:
        return self.headers(user=user_id, platform="plt_demo")

    def move_clock(self, delta: timedelta) -> None:
        """Every replica's clock jumps by `delta` (validity, locks and undo windows without waiting)."""
        self.offset += delta
        for runtime in self.runtimes:
            runtime.context = replace(marketing_context(runtime), clock=lambda: datetime.now(UTC) + self.offset)

    async def deliver(self, event: Envelope, replica: int = 0) -> None:
        """Apply one cashier event as the inbox consumer would: its subscription's handler, one transaction."""
        runtime = self.runtimes[replica]
        for subscription in subscriptions(marketing_context(runtime).settings):
            if subscription.wants(event.type) and subscription.topic == f"cashier.{event.type.split('.')[0]}s":
                async with runtime.uow.begin() as tx:
                    await subscription.handler(tx, event)

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The events marketing put in its outbox, oldest first (envelopes as dicts)."""
        query = select(outbox.c.payload).order_by(outbox.c.seq)
        if event_type is not None:
            query = query.where(outbox.c.event_type == event_type)
        async with self.runtime.uow.read() as conn:
            return [json.loads(p) for p in (await conn.execute(query)).scalars()]

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str], replica: int = 0) -> httpx.Response:
        return await self.clients[replica].post(path, json=body, headers=headers)

    async def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return await self.clients[0].get(path, headers=headers)

    async def campaign(self, headers: dict[str, str] | None = None) -> str:
        response = await self.post("/v1/marketing/campaigns", {"name": "Spring"}, headers or self.operator())
        assert response.status_code == 201, response.text
        return str(response.json()["campaign_id"])

    async def running_stock(self, headers: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
        """A started stock: 10 off 100 (满100减10), platform-funded, 100 coupons, valid 30 days after claim."""
        headers = headers or self.operator()
        body: dict[str, Any] = {
            "campaign_id": await self.campaign(headers),
            "name": "10 off 100",
            "discount_kind": "fixed",
            "amount_off_minor": 1000,
            "threshold_minor": 10_000,
            "valid_days_after_claim": 30,
            "funding_party": "platform",
            "budget_count": 100,
            **overrides,
        }
        created = await self.post("/v1/marketing/stocks", body, headers)
        assert created.status_code == 201, created.text
        started = await self.post(f"/v1/marketing/stocks/{created.json()['stock_id']}/start", {}, headers)
        assert started.status_code == 200, started.text
        return dict(started.json())

    async def claim(
        self, stock_id: str, user_id: str = "usr_1", request_id: str = "r1", replica: int = 0
    ) -> httpx.Response:
        body = {"stock_id": stock_id, "request_id": request_id}
        return await self.post("/v1/marketing/me/claims", body, self.user(user_id), replica)


def code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["code"])


async def start_marketing(
    migrated_database: Callable[..., Any],
    service_settings: Callable[..., Any],
    running_apps: Callable[..., Any],
    **settings: Any,
) -> Marketing:
    """Two marketing app instances (API role: tests drive the worker rounds) on one fresh database, with
    `settings` over the defaults."""
    database_url = await migrated_database("marketing")
    clients, runtimes = [], []
    for _ in range(2):
        app = create_app(service_settings("marketing", database_url=database_url, role="api", **settings))
        clients.append(await running_apps(app))
        runtimes.append(app.state.runtime)
    secret = runtimes[0].settings.internal_token_secret.get_secret_value()
    return Marketing(clients, runtimes, secret)


@pytest.fixture
async def marketing(
    migrated_database: Callable[..., Any], service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> Marketing:
    return await start_marketing(migrated_database, service_settings, running_apps)
