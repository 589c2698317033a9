"""`python -m deploy.migrate`: the migration Job and the initContainer that waits for it, on the real PostgreSQL.

Run as the Job and the initContainer run it: a child process with the service's database URL variable.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from libs.common.db import asyncpg_dsn
from libs.common.embedded import create_database, database_url
from libs.common.migrations import alembic_config
from libs.common.services import SERVICES
from libs.common.testing.infra import Infra


@pytest.fixture
async def empty_routing_db(juhe_infra: Infra) -> str:
    name = f"t_deploy_{uuid.uuid4().hex[:12]}"
    await create_database(juhe_infra.server_url, name)
    juhe_infra.created_databases.append(name)
    return database_url(juhe_infra.server_url, name)


@pytest.fixture
def run_migrate(run_module: Callable[..., subprocess.CompletedProcess[str]]) -> Callable[..., Any]:
    def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_module("deploy.migrate", *args, env={"JUHE_ROUTING_DATABASE_URL": url})

    return run


async def revisions(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
            return set()
        return {row["version_num"] for row in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


async def test_wait_refuses_a_schema_behind_head_and_accepts_it_once_migrated(
    empty_routing_db: str, run_migrate: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    heads = set(ScriptDirectory.from_config(alembic_config(SERVICES["routing"].migrations_dir, "")).get_heads())
    # Before the Job ran, the initContainer's wait gives up: non-zero exit, the pod does not start.
    waited = run_migrate(empty_routing_db, "--wait", "0", "routing")
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "not at head" in waited.stdout
    assert await revisions(empty_routing_db) == set()

    job = run_migrate(empty_routing_db, "routing")
    assert job.returncode == 0, job.stderr
    assert await revisions(empty_routing_db) == heads
    waited = run_migrate(empty_routing_db, "--wait", "0", "routing")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    # A second Job run (a retried rollout) changes nothing and succeeds.
    assert run_migrate(empty_routing_db, "routing").returncode == 0
    assert await revisions(empty_routing_db) == heads


def test_unknown_service_is_refused(run_migrate: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run_migrate("postgresql+asyncpg://unused/unused", "nosuch")
    assert result.returncode == 2
    assert "unknown service" in result.stderr
