"""Everything a use case needs, built once per process at start-up (`Cashier`), and the connector pool."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.internal_auth import Identity
from libs.common.logging import get_logger
from libs.common.modes import Mode, livemode_of, mode_of
from libs.common.sealing import Sealer
from services.cashier.clients.ledger import LedgerClient
from services.cashier.clients.marketing import MarketingClient
from services.cashier.clients.routing import RoutingClient
from services.cashier.clients.settlement import SettlementClient
from services.cashier.config import Settings
from services.cashier.connectors.base import Connector
from services.cashier.connectors.registry import build_connector, close_connector
from services.cashier.domain.errors import NO_ROUTE_AVAILABLE
from services.cashier.domain.modes import default_sandbox_hosts
from services.cashier.flows.webhook_targets import WebhookClient, webhook_client
from services.cashier.store.merchants import channel_configs

log = get_logger("juhe.cashier")

MODES_LIVE_FIRST: tuple[Mode, ...] = ("live", "test")  # the order `channel_configs` reads them in (by mode)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ConnectorPool:
    """One connector (with its HTTP pool) per merchant channel config version, reused across requests.

    A config update bumps the version, so the next use builds a fresh connector and the old one is
    closed; replicas agree because the version lives in the database.
    """

    uow: UnitOfWork
    # Per channel, config the cashier itself supplies under the merchant's stored one (the wallet's ledger URL).
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    _connectors: dict[tuple[str, str, str], tuple[int, Connector]] = field(default_factory=dict)

    async def get(self, merchant_id: str, channel: str, *, livemode: bool | None = None) -> Connector:
        """The connector of the merchant's `channel` config; with `livemode` (the payment's), only the config of
        that mode: a test payment never reaches a live channel. A merchant may hold a test and a live config side by
        side; without `livemode` the config must then be named by mode, so one of them alone is used, never a guess."""
        async with self.uow.read() as conn:
            rows = await channel_configs(conn, merchant_id, channel)
        if not rows:
            raise Problem(NO_ROUTE_AVAILABLE, f"merchant {merchant_id} has no {channel} channel configured")
        if livemode is not None:
            wanted = mode_of(livemode)
            rows = [r for r in rows if r.mode == wanted]
            if not rows:
                raise Problem(
                    NO_ROUTE_AVAILABLE,
                    f"merchant {merchant_id} has no {wanted} {channel} configuration; a {wanted} payment cannot use "
                    "the other mode's",
                )
        if len(rows) > 1:
            raise Problem(
                NO_ROUTE_AVAILABLE,
                f"merchant {merchant_id} has a test and a live {channel} configuration: the payment's mode must choose",
            )
        return await self.for_config(rows[0])

    async def each_mode(self, merchant_id: str, channel: str) -> list[tuple[Mode, Connector]]:
        """(mode, connector) of every config of the merchant's `channel` (live first): a channel notification names
        the merchant and channel only, and only the config whose keys it was signed with verifies it."""
        return [(mode, connector) for mode, _version, connector in await self.read_modes(merchant_id, channel)]

    async def read_modes(self, merchant_id: str, channel: str) -> list[tuple[Mode, int, Connector]]:
        """(mode, version, connector) of every config of the merchant's `channel` as read now (live first)."""
        async with self.uow.read() as conn:
            rows = await channel_configs(conn, merchant_id, channel)
        return [(row.mode, row.version, await self.for_config(row)) for row in rows]

    def cached_modes(self, merchant_id: str, channel: str) -> list[tuple[Mode, int, Connector]]:
        """(mode, version, connector) of the configs of the merchant's `channel` this process built last (live first),
        reading nothing; empty when none was built yet. The version may be old: a caller acts on what such a
        connector verified only after checking that version against the database in the transaction that acts
        (flows/notifications.py reads it with the attempt), and reads again (`read_modes`) when it differs, so a
        configuration changed or a key replaced on any replica is used by the next notification, never a time-based
        cache (docs/performance.md, fifth pass)."""
        found: list[tuple[Mode, int, Connector]] = []
        for mode in MODES_LIVE_FIRST:
            cached = self._connectors.get((merchant_id, channel, mode))
            if cached is not None:
                found.append((mode, cached[0], cached[1]))
        return found

    async def for_config(self, row: Any) -> Connector:
        """The connector of a `merchant_channels` row the caller has just read: nothing read here. A payment's
        create reads its merchant's configs once, for routing and for its prepay (docs/performance.md); the row's
        version picks the cached connector or replaces it, as `get` does, so a config updated on any replica is used
        by the next read of it."""
        key = (row.merchant_id, row.channel, row.mode)
        cached = self._connectors.get(key)
        if cached is not None and cached[0] == row.version:
            return cached[1]
        connector = build_connector(row.channel, self.effective_config(row.channel, dict(row.config)))
        self._connectors[key] = (row.version, connector)
        if cached is not None:
            with contextlib.suppress(Exception):
                await close_connector(cached[1])
        return connector

    def effective_config(self, channel: str, config: dict[str, Any]) -> dict[str, Any]:
        """The stored config over what the cashier supplies itself (the merchant's own non-empty values win)."""
        if channel not in self.defaults:
            return config
        return {**self.defaults[channel], **{k: v for k, v in config.items() if v not in ("", None)}}

    async def aclose(self) -> None:
        for _, connector in self._connectors.values():
            with contextlib.suppress(Exception):
                await close_connector(connector)
        self._connectors.clear()


@dataclass
class Cashier:
    settings: Settings
    uow: UnitOfWork
    connectors: ConnectorPool
    routing: RoutingClient
    webhook_http: WebhookClient
    settlement: SettlementClient
    marketing: MarketingClient
    # Seals the merchants' and webhook endpoints' signing secrets at rest (flows/merchants.py, webhook_endpoints.py).
    sealer: Sealer
    clock: Callable[[], datetime] = utc_now
    # Top-up refunds' balance hold (clients/ledger.py); None in tests that build a Cashier without it.
    ledger: LedgerClient | None = None

    def sandbox_hosts(self) -> frozenset[str]:
        """The hosts whose channel endpoints are sandboxes (domain/modes.py)."""
        configured = self.settings.sandbox_hosts
        return frozenset(configured) if configured else default_sandbox_hosts(self.settings.env)

    def mode_of(self, identity: Identity) -> Mode:
        """The mode of what `identity` creates: its API key's, else the default (live in prod)."""
        if identity.mode is not None:
            return identity.mode
        if self.settings.default_mode:
            return self.settings.default_mode
        return "live" if self.settings.env == "prod" else "test"

    @staticmethod
    def livemode_filter(identity: Identity) -> bool | None:
        """Which objects `identity` may see: only its key's mode; None (both, each marked) without a key mode."""
        return livemode_of(identity.mode) if identity.mode is not None else None

    def notify_url(self, channel: str, merchant_id: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/v1/notify/{channel}/{merchant_id}"

    async def aclose(self) -> None:
        await self.connectors.aclose()
        await self.routing.aclose()
        await self.webhook_http.aclose()
        await self.settlement.aclose()
        await self.marketing.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()


def build_cashier(settings: Settings, uow: UnitOfWork) -> Cashier:
    return Cashier(
        settings=settings,
        uow=uow,
        sealer=Sealer.from_settings(
            settings.secrets_encryption_key,
            key_id=settings.secrets_encryption_key_id,
            retired=settings.secrets_retired_keys,
        ),
        connectors=ConnectorPool(
            uow,
            defaults={
                "wallet": {"ledger_url": settings.ledger_url, "timeout_seconds": settings.ledger_timeout_seconds},
            },
        ),
        routing=RoutingClient(settings.routing_url, timeout_seconds=settings.routing_timeout_seconds),
        webhook_http=webhook_client(settings),
        settlement=SettlementClient(
            settings.settlement_url,
            timeout_seconds=settings.settlement_timeout_seconds,
            identity_secret=settings.internal_token_secret.get_secret_value(),
        ),
        marketing=MarketingClient(
            settings.marketing_url,
            timeout_seconds=settings.marketing_timeout_seconds,
            identity_secret=settings.internal_token_secret.get_secret_value(),
        ),
        ledger=LedgerClient(
            settings.ledger_url,
            timeout_seconds=settings.ledger_timeout_seconds,
            identity_secret=settings.internal_token_secret.get_secret_value(),
        ),
    )
