"""Where each Juhe process lives and how it is configured: one table for the launcher and the tests."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    module: str  # python -m <module>
    default_port: int
    database: str | None  # its own database, or None (sandboxes)
    env_prefix: str

    @property
    def migrations_dir(self) -> Path:
        return REPO_ROOT / Path(*self.module.split(".")) / "store" / "migrations"

    def settings_class(self) -> Any:
        return importlib.import_module(f"{self.module}.config").Settings


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("cashier", "services.cashier", 8001, "juhe_cashier", "JUHE_CASHIER_"),
        ServiceSpec("ledger", "services.ledger", 8002, "juhe_ledger", "JUHE_LEDGER_"),
        ServiceSpec("routing", "services.routing", 8003, "juhe_routing", "JUHE_ROUTING_"),
        ServiceSpec("settlement", "services.settlement", 8004, "juhe_settlement", "JUHE_SETTLEMENT_"),
        ServiceSpec("marketing", "services.marketing", 8005, "juhe_marketing", "JUHE_MARKETING_"),
        ServiceSpec("migration", "services.migration", 8007, "juhe_migration", "JUHE_MIGRATION_"),
        ServiceSpec("gateway", "gateway", 8000, "juhe_gateway", "JUHE_GATEWAY_"),
    )
}

# Processes without a database of their own that serve people, not services: the web process (checkout, My
# Wallet, consoles; web/). Kept out of SERVICES, whose every entry the launcher and the test plugin migrate
# (`prepare_databases` asserts a database). The launcher runs these after the gateway with
# `gateway_url` = the gateway, and gives the gateway `web_url` = this process (docs/web.md).
FRONTENDS: dict[str, ServiceSpec] = {spec.name: spec for spec in (ServiceSpec("web", "web", 8006, None, "JUHE_WEB_"),)}

SANDBOXES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("wechatpay", "sandboxes.wechatpay", 8100, None, "JUHE_SANDBOX_WECHATPAY_"),
        ServiceSpec("alipay", "sandboxes.alipay", 8101, None, "JUHE_SANDBOX_ALIPAY_"),
        ServiceSpec("unionpay", "sandboxes.unionpay", 8102, None, "JUHE_SANDBOX_UNIONPAY_"),
        ServiceSpec("ecny", "sandboxes.ecny", 8103, None, "JUHE_SANDBOX_ECNY_"),
        ServiceSpec("bank", "sandboxes.bank", 8104, None, "JUHE_SANDBOX_BANK_"),
        ServiceSpec("identity", "sandboxes.identity", 8105, None, "JUHE_SANDBOX_IDENTITY_"),
    )
}


def service_env(spec: ServiceSpec, values: dict[str, Any]) -> dict[str, str]:
    """Settings as environment variables for a child process (`JUHE_LEDGER_PORT=8002`, …)."""
    return {f"{spec.env_prefix}{key.upper()}": str(value) for key, value in values.items() if value is not None}
