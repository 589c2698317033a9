"""Pytest plugin (loaded from pyproject): the embedded infrastructure and service fixtures.

One embedded PostgreSQL and one Tansu broker per test session, started exactly as `make run` starts
them, unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS point at real servers. Every test that asks for a
database gets a fresh one cloned from a migrated template (milliseconds), and a topic namespace of its
own, so tests never see each other's rows or events.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.common.embedded import EmbeddedBroker, EmbeddedPostgres, create_database, database_url, free_port
from libs.common.kafka import ensure_platform_topics, read_or_create_broker_epoch
from libs.common.migrations import upgrade
from libs.common.services import SERVICES
from libs.common.testing.infra import Infra

__all__ = ["Infra"]


@pytest.fixture(scope="session")
def juhe_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    root: Path = tmp_path_factory.mktemp("juhe-infra")
    pg: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    server_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if server_url:
        server_url = server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    else:
        pg = EmbeddedPostgres(root / "pgdata", free_port(), root / "postgres.log")
        pg.start()
        server_url = pg.server_url
    if not bootstrap:
        broker = EmbeddedBroker(free_port(), root / "tansu.log")
        broker.start()
        bootstrap = broker.bootstrap
    asyncio.run(read_or_create_broker_epoch(bootstrap))
    infra = Infra(server_url=server_url, bootstrap=bootstrap, root=root, broker=broker)
    try:
        yield infra
    finally:
        if broker:
            broker.stop()
        if pg:
            pg.stop()
        else:
            asyncio.run(infra.drop_created_databases())


DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture(scope="session")
def migrated_database(juhe_infra: Infra) -> DatabaseFactory:
    """`await migrated_database("ledger")` → URL of a fresh database with the ledger's migrations."""
    templates: dict[str, str] = {}
    lock = asyncio.Lock()

    async def make(service: str) -> str:
        spec = SERVICES[service]
        async with lock:
            if service not in templates:
                template = f"tpl_{service}_{uuid.uuid4().hex[:8]}"
                await create_database(juhe_infra.server_url, template)
                juhe_infra.created_databases.append(template)
                await asyncio.to_thread(upgrade, spec.migrations_dir, database_url(juhe_infra.server_url, template))
                templates[service] = template
            name = f"t_{service}_{uuid.uuid4().hex[:12]}"
            await create_database(juhe_infra.server_url, name, template=templates[service])
            juhe_infra.created_databases.append(name)
        return database_url(juhe_infra.server_url, name)

    return make


@pytest.fixture
def topic_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def platform_topics(juhe_infra: Infra, topic_namespace: str) -> str:
    await ensure_platform_topics(juhe_infra.bootstrap, topic_namespace)
    return topic_namespace


@pytest.fixture
def service_settings(juhe_infra: Infra, topic_namespace: str) -> Callable[..., Any]:
    """`service_settings("ledger", database_url=url, **overrides)` → that service's Settings for tests."""

    def build(service: str, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "env": "test",
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "topic_namespace": topic_namespace,
            "consumer_session_timeout_ms": 3000,
            "consumer_heartbeat_interval_ms": 500,
            "outbox_poll_interval_seconds": 0.2,
            "broker_epoch_check_interval_seconds": 0.5,
            "log_json": True,
        }
        values.update(overrides)
        return SERVICES[service].settings_class()(**values)

    return build


@pytest.fixture
async def running_apps() -> AsyncIterator[Callable[..., Any]]:
    """Start FastAPI apps in-process (lifespan included); yields `start(app) -> httpx.AsyncClient`."""
    from libs.common.testing.infra import run_app_in_process

    stack: list[Any] = []

    async def start(app: Any) -> Any:
        ctx = run_app_in_process(app)
        client = await ctx.__aenter__()
        stack.append(ctx)
        return client

    yield start
    for ctx in reversed(stack):
        await ctx.__aexit__(None, None, None)


@pytest.fixture
def service_processes(juhe_infra: Infra) -> Iterator[Callable[..., Any]]:
    """Start services as real subprocesses (`python -m services.X`); all stopped at test end."""
    from libs.common.testing.infra import ServiceProcess

    started: list[ServiceProcess] = []

    def start(service: str, settings: dict[str, Any], *, env: dict[str, str] | None = None) -> ServiceProcess:
        proc = ServiceProcess(SERVICES[service], settings, log_dir=juhe_infra.root / "logs", extra_env=env)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
