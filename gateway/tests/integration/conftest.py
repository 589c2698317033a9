"""A gateway in front of a small real upstream, both over real HTTP, on a fresh migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from juhe_sdk import AsyncClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.config import Settings
from gateway.flows.seed import seed_demo_async
from gateway.tests.integration.servers import ThreadServer
from gateway.tests.integration.upstream import Ledger, create_upstream
from libs.common.settings import ServiceSettings

INTERNAL_SECRET = "gateway-tests-internal-secret-0123456789"
DEAD_URL = "http://127.0.0.1:9"  # nothing listens: those services are "down" in these tests


@dataclass
class Stack:
    database_url: str
    settings: Settings
    gateway: ThreadServer
    upstream_url: str
    upstream: Ledger
    keys: dict[str, Any]
    servers: list[ThreadServer] = field(default_factory=list)
    clients: list[AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.base_url

    def merchant(self, key_id: str | None = None, secret: str | None = None, **options: Any) -> AsyncClient:
        client = AsyncClient(
            self.url,
            key_id=key_id or self.keys["key_id"],
            secret=secret or self.keys["secret"],
            max_retries=options.pop("max_retries", 0),
            retry_backoff_seconds=0.01,
            **options,
        )
        self.clients.append(client)
        return client

    def bearer(self, token: str, **options: Any) -> AsyncClient:
        client = AsyncClient(self.url, token=token, max_retries=0, **options)
        self.clients.append(client)
        return client

    def admin(self) -> AsyncClient:
        return self.bearer(self.keys["admin_key"])

    def start_gateway(self, **overrides: Any) -> ThreadServer:
        """Another replica of the gateway on the same database."""
        server = ThreadServer(create_app(self.settings.model_copy(update=overrides))).start()
        self.servers.append(server)
        return server

    async def new_merchant(self, name: str = "Merchant B", **body: Any) -> dict[str, Any]:
        created: dict[str, Any] = await self.admin().request(
            "POST", "/v1/platform/merchants", json={"name": name, **body}
        )
        return created


StackFactory = Callable[..., Any]


@pytest.fixture
async def make_stack(
    migrated_database: Callable[[str], Any], service_settings: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[StackFactory]:
    stacks: list[Stack] = []

    async def make(**overrides: Any) -> Stack:
        db = await migrated_database("gateway")
        state = Ledger()
        upstream_settings = ServiceSettings(
            env="prod",
            internal_token_secret=SecretStr(INTERNAL_SECRET),
            database_url=db,
            role="api",
            service_name="upstream",
        )
        upstream = ThreadServer(create_upstream(upstream_settings, state)).start()
        values: dict[str, Any] = {
            "database_url": db,
            "role": "api",
            "cashier_url": upstream.base_url,
            "ledger_url": DEAD_URL,
            "routing_url": DEAD_URL,
            "settlement_url": DEAD_URL,
            "marketing_url": DEAD_URL,
            "internal_token_secret": INTERNAL_SECRET,
            "key_cache_ttl_seconds": 0,
            "upstream_connect_retries_max": 0,
            **overrides,
        }
        settings: Settings = service_settings("gateway", **values)
        keys = await seed_demo_async(db, tmp_path / f"keys-{len(stacks)}.json", settings=settings)
        gateway = ThreadServer(create_app(settings)).start()
        stack = Stack(db, settings, gateway, upstream.base_url, state, keys, servers=[gateway, upstream])
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for client in stack.clients:
            await client.aclose()
        for server in reversed(stack.servers):
            server.stop()
