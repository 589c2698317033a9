"""Pytest plugin (loaded from pyproject): the embedded infrastructure and service fixtures.

One embedded PostgreSQL and one Tansu broker per test session, started as `make run` starts them but
without durability (the data is thrown away: no fsync, no shutdown checkpoint), unless DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS point at real servers. Every test that asks for a
database gets a fresh one cloned from a migrated template (milliseconds), and a topic namespace of its
own, so tests never see each other's rows or events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from libs.common.embedded import create_database, database_url, kafka_broker, postgres_server
from libs.common.kafka import ensure_platform_topics, read_or_create_broker_epoch
from libs.common.migrations import upgrade
from libs.common.services import SERVICES
from libs.common.testing.infra import TEST_TIMINGS, Infra, ServiceProcess

__all__ = ["DatabaseFactory", "Infra", "RunningApps", "ServiceProcesses", "ServiceSettings"]


@contextlib.contextmanager
def data_dir_outside_pytest(prefix: str) -> Iterator[Path]:
    """A scratch folder for PostgreSQL data, not under pytest's basetemp.

    The embedded PostgreSQL runs as another user, so every parent of its data dir must be traversable;
    pytest resets its basetemp root to 0700 whenever a pytest session starts, which would make initdb fail
    under a concurrent run. A folder of our own under the system temp dir has no such neighbour.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def juhe_data_dir() -> Iterator[Path]:
    """A fresh `.juhe`-like data folder for launcher tests."""
    with data_dir_outside_pytest("juhe-data-") as path:
        yield path


@pytest.fixture(scope="session")
def juhe_infra() -> Iterator[Infra]:
    with (
        data_dir_outside_pytest("juhe-infra-") as root,
        postgres_server(root, durable=False) as server_url,  # thrown away with root: no fsync, no checkpoint
        kafka_broker(root) as bootstrap,
    ):
        asyncio.run(read_or_create_broker_epoch(bootstrap))
        infra = Infra(server_url=server_url, bootstrap=bootstrap, root=root)
        try:
            yield infra
        finally:
            if os.environ.get("DATABASE_URL"):  # an embedded server is thrown away whole
                asyncio.run(infra.drop_created_databases())


DatabaseFactory = Callable[[str], Awaitable[str]]
# `service_settings("ledger", database_url=url, **overrides)` → that service's Settings (each its own class).
ServiceSettings = Callable[..., Any]
# `await running_apps(app)` → a client calling the app in-process, its lifespan running until the test ends.
RunningApps = Callable[[Any], Awaitable[httpx.AsyncClient]]


class ServiceProcesses(Protocol):
    """The `service_processes` fixture: `start(service, settings, env=...)` → a running service process."""

    def __call__(
        self, service: str, settings: dict[str, Any], *, env: dict[str, str] | None = None
    ) -> ServiceProcess: ...


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
def service_settings(juhe_infra: Infra, topic_namespace: str) -> ServiceSettings:
    """`service_settings("ledger", database_url=url, **overrides)` → that service's Settings for tests."""

    def build(service: str, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "env": "test",
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "topic_namespace": topic_namespace,
            **TEST_TIMINGS,
            "log_json": True,
        }
        values.update(overrides)
        return SERVICES[service].settings_class()(**values)

    return build


@pytest.fixture
async def running_apps() -> AsyncIterator[RunningApps]:
    """Start FastAPI apps in-process (lifespan included); yields `start(app) -> httpx.AsyncClient`."""
    from libs.common.testing.infra import run_app_in_process

    stack: list[Any] = []

    async def start(app: Any) -> httpx.AsyncClient:
        ctx = run_app_in_process(app)
        client = await ctx.__aenter__()
        stack.append(ctx)
        return client

    yield start
    for ctx in reversed(stack):
        await ctx.__aexit__(None, None, None)


@pytest.fixture
def service_processes(juhe_infra: Infra) -> Iterator[ServiceProcesses]:
    """Start services as real subprocesses (`python -m services.X`); all stopped at test end."""
    started: list[ServiceProcess] = []

    def start(service: str, settings: dict[str, Any], *, env: dict[str, str] | None = None) -> ServiceProcess:
        proc = ServiceProcess(SERVICES[service], settings, log_dir=juhe_infra.root / "logs", extra_env=env)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` (make test): heaviest files first, shared-platform files in one unit (scheduling.py)."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from libs.common.testing.scheduling import HeaviestFirstScheduling

    return HeaviestFirstScheduling(config, log)
