"""Small builders for domain tests: a realistic route table (direct, service provider, acquirers)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

from services.routing.domain.decide import RouteHealth, RoutingSettings, Snapshot
from services.routing.domain.fees import FeeRate
from services.routing.domain.model import (
    Contract,
    Method,
    PayerClient,
    PaymentContext,
    Route,
    RouteKind,
    Scene,
)
from services.routing.domain.rules import Rule

T0 = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # Monday 12:00 in Beijing
RATES_FROM = datetime(2026, 1, 1, tzinfo=UTC)
MERCHANT = "mch_school"
ALL_SCENES = frozenset(Scene)


def route(route_id: str, method: Method = Method.WECHAT, **overrides: object) -> Route:
    base = Route(
        route_id=route_id,
        method=method,
        scenes=ALL_SCENES,
        kind=RouteKind.ACQUIRER,
        provider=route_id.split("_")[0],
        connector=method.value,
        config_ref=f"cfg/{route_id}",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def rate(route_id: str, rate_bps: int, **overrides: object) -> FeeRate:
    base = FeeRate(rate_id=f"fr_{route_id}_{rate_bps}", route_id=route_id, rate_bps=rate_bps, valid_from=RATES_FROM)
    return replace(base, **overrides)  # type: ignore[arg-type]


def snapshot(
    routes: Iterable[Route],
    rates: Iterable[FeeRate],
    *,
    merchant_id: str = MERCHANT,
    rules: Iterable[Rule] = (),
    health: dict[str, RouteHealth] | None = None,
    volume: dict[str, int] | None = None,
    settings: RoutingSettings | None = None,
    contracts: Iterable[Contract] | None = None,
) -> Snapshot:
    routes = list(routes)
    by_route: dict[str, list[FeeRate]] = {}
    for r in rates:
        by_route.setdefault(r.route_id, []).append(r)
    if contracts is None:
        contracts = [Contract(merchant_id, r.route_id, f"sub_{r.route_id}") for r in routes]
    return Snapshot(
        routes={r.route_id: r for r in routes},
        rates={k: tuple(v) for k, v in by_route.items()},
        contracts={(c.merchant_id, c.route_id): c for c in contracts},
        rules=tuple(rules),
        health=health or {},
        volume_today_minor=volume or {},
        settings=settings or RoutingSettings(),
        config_version=7,
    )


def payment(payment_id: str = "pay_1", amount_minor: int = 10_000, **overrides: object) -> PaymentContext:
    base = PaymentContext(
        payment_id=payment_id,
        merchant_id=MERCHANT,
        amount_minor=amount_minor,
        currency="CNY",
        method=Method.WECHAT,
        scene=Scene.JSAPI,
        payer_client=PayerClient.WECHAT,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]
