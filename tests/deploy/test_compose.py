"""docker-compose.yml, the Dockerfile and the PostgreSQL init script (no Docker daemon here: validated statically,
the init script run on the real PostgreSQL the fixtures start)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import pytest
import yaml

from libs.common.db import asyncpg_dsn
from libs.common.embedded import postgres_bin_dir
from libs.common.services import FRONTENDS, REPO_ROOT, SERVICES
from libs.common.testing.infra import Infra

COMPOSE = REPO_ROOT / "docker-compose.yml"
SCHEMA = REPO_ROOT / "deploy" / "compose" / "schema" / "compose-spec.json"
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_KEY$|TOKEN")
# A sealing key ring's id and retired keys may default to the ring of one key (`k1`, nothing retired): no secret value.
KEY_RING_DEFAULT = re.compile(r"^\$\{JUHE_[A-Z_]+_(ENCRYPTION_KEY_ID:-k1|RETIRED_KEYS:-\{\})\}$")
REQUIRED_VAR = re.compile(r"\$\{[A-Z_]+:\?[^}]*\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_file_is_generated_from_the_table(run_module: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run_module("deploy.compose.generate", "--check")
    assert result.returncode == 0, f"run `python -m deploy.compose.generate`:\n{result.stdout}{result.stderr}"


def test_compose_file_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert not errors
    broken = {**compose, "services": {"x": {"image": "juhe", "restart": "sometimes", "helthcheck": {}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))  # the schema does catch mistakes


def module_exists(module: str) -> bool:
    path = REPO_ROOT / Path(*module.split("."))
    return (path / "__main__.py").exists() or path.with_suffix(".py").exists()


def test_every_service_it_names_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        command = service.get("command", [])
        if command[:2] == ["python", "-m"]:
            module = command[2]
            assert module_exists(module), f"{name}: no module {module}"
            top = module.split(".")[0]
            copied = f"COPY --chown=root:root {top} ./{top}" in dockerfile or f"{top}/migrate.py" in dockerfile
            assert copied, f"{name}: the image does not contain {top}/"
    for name, spec in SERVICES.items():
        for entry, role in ((name, "api"), (f"{name}-worker", "worker")):
            assert services[entry]["command"] == ["python", "-m", spec.module]
            assert services[entry]["environment"][f"{spec.env_prefix}ROLE"] == role
            assert services[entry]["healthcheck"]["test"][0] == "CMD"
    for name, spec in FRONTENDS.items():  # one container, no role split, no database
        assert services[name]["command"] == ["python", "-m", spec.module]
        assert not any("DATABASE_URL" in var for var in services[name]["environment"])
    assert services["migrate"]["command"] == ["python", "-m", "deploy.migrate"]
    assert {"postgres", "kafka"} <= services.keys()
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper


def test_no_secret_has_a_default_and_only_the_gateway_is_published(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for var, value in service.get("environment", {}).items():
            if KEY_RING_DEFAULT.match(str(value)):
                continue
            if SECRET_NAME.search(var) or "DATABASE_URL" in var:
                assert REQUIRED_VAR.search(str(value)), f"{name}: {var} must come from a required variable"
            assert ":-" not in str(value) or not SECRET_NAME.search(str(value)), f"{name}: {var} has a default"
        if name != "gateway":
            assert "ports" not in service, f"{name} is published"
        if service.get("image", "").startswith("juhe"):
            assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
            assert service["user"] != "0" and not service["user"].startswith("root")


def test_every_setting_it_sets_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            for spec in [*SERVICES.values(), *FRONTENDS.values()]:
                if var.startswith(spec.env_prefix):
                    field = var.removeprefix(spec.env_prefix).lower()
                    assert field in spec.settings_class().model_fields, f"{name}: {var}"


def test_dockerfile_is_multi_stage_non_root_pinned_and_healthchecked() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^USER 10001", final, re.MULTILINE)
    assert "HEALTHCHECK" in final
    assert not re.search(r"pip install|apt-get|uv pip|gcc|build-essential", final)
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".juhe", "tests", "**/tests"} <= set(ignored)


async def test_postgres_init_script_creates_the_role_and_one_database_per_service(juhe_infra: Infra) -> None:
    """The script the compose PostgreSQL runs, on the real server, with unique names so runs never collide."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    sql = (REPO_ROOT / "deploy" / "postgres-init.sql").read_text()
    sql = sql.replace("DATABASE juhe_", f"DATABASE {tag}_juhe_").replace("ROLE juhe ", f"ROLE {tag}_juhe ")
    sql = sql.replace("OWNER juhe;", f"OWNER {tag}_juhe;")
    databases = re.findall(r"CREATE DATABASE (\w+)", sql)
    assert len(databases) == len(SERVICES)
    juhe_infra.created_databases.extend(databases)
    dsn = asyncpg_dsn(juhe_infra.server_url)
    psql = str(postgres_bin_dir() / "psql")

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [psql, "-v", "ON_ERROR_STOP=1", "-X", "-q", dsn],
            input=sql,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    base_env = {k: v for k, v in os.environ.items() if k != "JUHE_DB_PASSWORD"}
    refused = run(base_env)
    assert refused.returncode != 0  # no password, no role and no databases
    password = uuid.uuid4().hex
    try:
        done = run({**base_env, "JUHE_DB_PASSWORD": password})
        assert done.returncode == 0, done.stderr
        admin = await asyncpg.connect(dsn)
        try:
            owners = dict(
                await admin.fetch(
                    "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY($1::text[])",
                    databases,
                )
            )
            superuser = await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", f"{tag}_juhe")
        finally:
            await admin.close()
        assert owners == {db: f"{tag}_juhe" for db in databases}
        assert superuser is False
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            for db in databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
            await admin.execute(f'DROP ROLE IF EXISTS "{tag}_juhe"')
        finally:
            await admin.close()


def test_the_gateway_checks_kyc_with_the_operators_secret_never_the_demo_one(compose: dict[str, Any]) -> None:
    """Onboarding's KYC step (docs/onboarding.md): the gateway's API and worker containers (the worker finishes
    onboardings) get the identity provider's URL and shared secret from required variables, with no default."""
    for name in ("gateway", "gateway-worker"):
        env = compose["services"][name]["environment"]
        assert env["JUHE_GATEWAY_IDENTITY_SECRET"].startswith("${JUHE_GATEWAY_IDENTITY_SECRET:?")
        assert env["JUHE_GATEWAY_IDENTITY_BASE_URL"].startswith("${JUHE_IDENTITY_URL:?")
