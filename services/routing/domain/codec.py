"""Plain-data forms of the configuration objects, for storage (JSONB, audit before/after) and events.

One place converts, so the audit trail, the events and the API all show a route or a rule the same way.
Readers are tolerant of missing optional keys (older rows); writers always write every key.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from services.routing.domain.decide import RoutingSettings
from services.routing.domain.fees import FeeRate
from services.routing.domain.health import HealthPolicy
from services.routing.domain.model import Contract, Method, PayerClient, Route, RouteKind, Scene, TimeWindow
from services.routing.domain.scoring import ScoringWeights


def route_to_dict(route: Route) -> dict[str, Any]:
    return {
        "route_id": route.route_id,
        "method": route.method.value,
        "scenes": sorted(s.value for s in route.scenes),
        "kind": route.kind.value,
        "provider": route.provider,
        "connector": route.connector,
        "config_ref": route.config_ref,
        "currency": route.currency,
        "enabled": route.enabled,
        "amount_min_minor": route.amount_min_minor,
        "amount_max_minor": route.amount_max_minor,
        "daily_volume_cap_minor": route.daily_volume_cap_minor,
        "opening_hours": [w.as_dict() for w in route.opening_hours],
        "payer_clients": None if route.payer_clients is None else sorted(c.value for c in route.payer_clients),
        "expected_success_rate": route.expected_success_rate,
        "priority": route.priority,
        "description": route.description,
        "version": route.version,
    }


def route_from_dict(raw: dict[str, Any]) -> Route:
    clients = raw.get("payer_clients")
    return Route(
        route_id=raw["route_id"],
        method=Method(raw["method"]),
        scenes=frozenset(Scene(s) for s in raw["scenes"]),
        kind=RouteKind(raw["kind"]),
        provider=raw["provider"],
        connector=raw["connector"],
        config_ref=raw["config_ref"],
        currency=raw.get("currency", "CNY"),
        enabled=bool(raw.get("enabled", True)),
        amount_min_minor=int(raw.get("amount_min_minor", 1)),
        amount_max_minor=raw.get("amount_max_minor"),
        daily_volume_cap_minor=raw.get("daily_volume_cap_minor"),
        opening_hours=tuple(TimeWindow.from_dict(w) for w in raw.get("opening_hours") or ()),
        payer_clients=None if clients is None else frozenset(PayerClient(c) for c in clients),
        expected_success_rate=float(raw.get("expected_success_rate", 0.95)),
        priority=int(raw.get("priority", 100)),
        description=raw.get("description") or "",
        version=int(raw.get("version", 1)),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def fee_rate_to_dict(rate: FeeRate, *, version: int = 1) -> dict[str, Any]:
    return {
        "rate_id": rate.rate_id,
        "route_id": rate.route_id,
        "rate_bps": rate.rate_bps,
        "min_fee_minor": rate.min_fee_minor,
        "max_fee_minor": rate.max_fee_minor,
        "fixed_fee_minor": rate.fixed_fee_minor,
        "industry": rate.industry,
        "merchant_id": rate.merchant_id,
        "valid_from": _iso(rate.valid_from),
        "valid_until": _iso(rate.valid_until),
        "version": version,
    }


def contract_to_dict(contract: Contract) -> dict[str, Any]:
    return {
        "merchant_id": contract.merchant_id,
        "route_id": contract.route_id,
        "sub_merchant_id": contract.sub_merchant_id,
        "enabled": contract.enabled,
        "industry": contract.industry,
        "version": contract.version,
    }


def settings_to_dict(settings: RoutingSettings) -> dict[str, Any]:
    return asdict(settings)


def settings_from_dict(raw: dict[str, Any]) -> RoutingSettings:
    """Unknown keys are ignored and missing keys take their defaults (stored '{}' = all defaults)."""

    def pick(cls: type, values: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in values.items() if k in names}

    top = pick(RoutingSettings, raw)
    top["weights"] = ScoringWeights(**pick(ScoringWeights, raw.get("weights") or {}))
    top["health"] = HealthPolicy(**pick(HealthPolicy, raw.get("health") or {}))
    return RoutingSettings(**top)
