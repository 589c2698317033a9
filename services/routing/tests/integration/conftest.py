"""Fixtures for the routing integration tests: a migrated database, the app in-process, seed data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.routing.app import create_app

ACTOR = {"X-Juhe-Actor": "ops@test"}
MERCHANT = "mch_school"
RATES_FROM = "2026-01-01T00:00:00+08:00"

# Three WeChat routes and one Alipay route, priced like the real market: direct at 0.6 %, a service
# provider at 0.38 %, an acquirer at 0.45 %.
ROUTES: list[dict[str, Any]] = [
    {"route_id": "wx_direct", "method": "wechat", "kind": "direct", "provider": "wechatpay", "rate_bps": 60},
    {"route_id": "wx_sp", "method": "wechat", "kind": "service_provider", "provider": "wechatpay", "rate_bps": 38},
    {"route_id": "wx_lianlian", "method": "wechat", "kind": "acquirer", "provider": "lianlian", "rate_bps": 45},
    {"route_id": "ali_direct", "method": "alipay", "kind": "direct", "provider": "alipay", "rate_bps": 60},
]


@pytest.fixture
async def routing_db(migrated_database: Callable[[str], Awaitable[str]]) -> str:
    return await migrated_database("routing")


@pytest.fixture
def make_app(service_settings: Callable[..., Any], running_apps: Callable[..., Any], routing_db: str) -> Any:
    """`await make_app(role="api")` → an httpx client on a fresh app instance over the test database."""

    async def start(**overrides: Any) -> httpx.AsyncClient:
        values = {"database_url": routing_db, "role": "api", "health_sweep_interval_seconds": 0.2, **overrides}
        client: httpx.AsyncClient = await running_apps(create_app(service_settings("routing", **values)))
        return client

    return start


async def seed(client: httpx.AsyncClient, routes: list[dict[str, Any]] = ROUTES, merchant_id: str = MERCHANT) -> None:
    for spec in routes:
        body = {k: v for k, v in spec.items() if k != "rate_bps"}
        body.setdefault("scenes", ["jsapi", "native_qr", "h5", "app", "mini_program"])
        body.setdefault("connector", spec["provider"])
        body.setdefault("config_ref", f"cfg/{spec['route_id']}")
        r = await client.post("/v1/channel-routes", json=body, headers=ACTOR)
        assert r.status_code == 201, r.text
        r = await client.post(
            "/v1/fee-rates",
            json={"route_id": spec["route_id"], "rate_bps": spec["rate_bps"], "valid_from": RATES_FROM},
            headers=ACTOR,
        )
        assert r.status_code == 201, r.text
        r = await client.put(
            f"/v1/contracts/{merchant_id}/{spec['route_id']}",
            json={"sub_merchant_id": f"sub_{spec['route_id']}"},
            headers=ACTOR,
        )
        assert r.status_code == 200, r.text


def payment(payment_id: str = "pay_1", **overrides: Any) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "merchant_id": MERCHANT,
        "amount_minor": 10_000,
        "currency": "CNY",
        "method": "wechat",
        "scene": "jsapi",
        "payer_client": "wechat",
        **overrides,
    }
