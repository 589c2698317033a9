"""A database or broker outage is 503 with a retryable code and Retry-After, never a 500; nothing is written;
the service answers again by itself once the database is back."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable
from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from libs.common.failures import is_unstorable_text_error, outage_spec
from libs.common.services import SERVICES
from libs.common.testing.plugin import DatabaseFactory, Infra
from libs.common.tests.database_outage import database_outage
from libs.common.web import UowDep
from services.ledger.app import create_app as ledger_app

ACCOUNT = {"holder_id": "mch_outage", "currency": "CNY", "kind": "merchant_pending", "code": "2201"}


def _is_outage_problem(response: httpx.Response) -> bool:
    if response.status_code != 503:
        return False
    body = response.json()
    return (
        response.headers["content-type"] == "application/problem+json"
        and body["code"] == "database_unavailable"
        and body["retryable"] is True
        and int(response.headers["retry-after"]) >= 1
    )


async def test_database_outage_is_503_and_the_service_recovers_by_itself(
    juhe_infra: Infra,
    migrated_database: DatabaseFactory,
    service_settings: Callable[..., Any],
    running_apps: Callable[..., Any],
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db, role="api")))
    source = (await client.post("/v1/accounts", json={**ACCOUNT, "code": "1101", "kind": "channel_clearing"})).json()
    target = (await client.post("/v1/accounts", json=ACCOUNT)).json()
    transfer = {
        "source": "outage-test",
        "postings": [
            {"account_id": source["id"], "direction": "debit", "amount_minor": 5, "currency": "CNY"},
            {"account_id": target["id"], "direction": "credit", "amount_minor": 5, "currency": "CNY"},
        ],
    }

    async with database_outage(juhe_infra.server_url, db):
        # The pool's connections were cut and new ones are refused: SQLAlchemy (accounts), the batching
        # writer's own asyncpg connections (transfers), reads; each twice (a dead pooled connection, then
        # a refused new one).
        for _ in range(2):
            created = await client.post("/v1/accounts", json={**ACCOUNT, "holder_id": "mch_during"})
            assert _is_outage_problem(created), created.text
            moved = await client.post("/v1/transfers", json={**transfer, "idempotency_key": "during"})
            assert _is_outage_problem(moved), moved.text
            read = await client.get(f"/v1/accounts/{target['id']}")
            assert _is_outage_problem(read), read.text
        assert (await client.get("/readyz")).status_code == 503

    # Back: the same requests succeed at once, without restarting the service; nothing was half-written.
    created = await client.post("/v1/accounts", json={**ACCOUNT, "holder_id": "mch_during"})
    assert created.status_code == 201, created.text
    moved = await client.post("/v1/transfers", json={**transfer, "idempotency_key": "during"})
    assert moved.status_code == 201, moved.text
    balances = (await client.get(f"/v1/accounts/{target['id']}")).json()["balances"]
    assert balances["credits_posted"] == 5
    listed = (await client.get("/v1/accounts", params={"holder_id": "mch_during"})).json()["data"]
    assert len(listed) == 1


async def _refused_connect() -> BaseException:
    try:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:9/none", timeout=5)
    except BaseException as exc:
        return exc
    raise AssertionError("connected to port 9")


async def test_outages_are_told_apart_from_bugs_and_bad_text() -> None:
    refused = await _refused_connect()
    assert isinstance(refused, OSError)
    assert outage_spec(refused) is not None and outage_spec(refused).code == "database_unavailable"  # type: ignore[union-attr]
    wrapped = RuntimeError("flow failed")
    wrapped.__cause__ = refused
    assert outage_spec(wrapped) is not None

    database = [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("too many clients"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        SQLAlchemyTimeoutError("QueuePool limit reached, connection timed out"),
        DBAPIError("SELECT 1", {}, asyncpg.ConnectionDoesNotExistError("gone"), connection_invalidated=True),
    ]
    for exc in database:
        spec = outage_spec(exc)
        assert spec is not None and spec.code == "database_unavailable" and spec.status == 503, repr(exc)
    for exc in (KafkaConnectionError("no route"), KafkaTimeoutError(), NoBrokersAvailable()):
        spec = outage_spec(exc)
        assert spec is not None and spec.code == "broker_unavailable" and spec.retryable, repr(exc)

    peer = httpx.ConnectError("All connection attempts failed")
    assert outage_spec(peer) is not None and outage_spec(peer).code == "service_unavailable"  # type: ignore[union-attr]

    # A bug, a query's data error or a file's OSError stays what it is (500 / 422), never "retry later".
    for exc in (
        ValueError("x"),
        asyncpg.DivisionByZeroError("division by zero"),
        asyncpg.UniqueViolationError("duplicate key"),
        FileNotFoundError("/nope"),
        TimeoutError("a flow's own deadline"),
    ):
        assert outage_spec(exc) is None, repr(exc)
    assert is_unstorable_text_error(asyncpg.InvalidTextRepresentationError("Unicode low surrogate must follow"))
    with pytest.raises(UnicodeEncodeError) as encode:
        "\udfff".encode()
    assert is_unstorable_text_error(encode.value) and outage_spec(encode.value) is None


def _probe_router() -> APIRouter:
    """A route that reads the service's database and takes a JSON body: added to each service's real app."""
    router = APIRouter()

    @router.post("/probe/outage")
    async def probe(uow: UowDep, body: dict[str, Any]) -> dict[str, Any]:
        async with uow.read() as conn:
            return {"one": (await conn.execute(text("SELECT 1"))).scalar_one(), "echo": body}

    return router


@pytest.mark.parametrize("service", ["cashier", "ledger", "routing", "settlement", "marketing"])
async def test_every_service_answers_outages_and_hostile_text_alike(
    service: str,
    juhe_infra: Infra,
    migrated_database: DatabaseFactory,
    service_settings: Callable[..., Any],
    running_apps: Callable[..., Any],
) -> None:
    db = await migrated_database(service)
    app = importlib.import_module(f"{SERVICES[service].module}.app").create_app(
        service_settings(service, database_url=db, role="api")
    )
    app.include_router(_probe_router())
    client = await running_apps(app)
    assert (await client.post("/probe/outage", json={"a": "支付"})).json() == {"one": 1, "echo": {"a": "支付"}}
    hostile = await client.post(
        "/probe/outage", content=b'{"a": "\\udfff"}', headers={"content-type": "application/json"}
    )
    assert hostile.status_code == 422 and hostile.json()["code"] == "validation_failed", hostile.text
    slash = await client.get("/livez/")
    assert slash.status_code == 404 and "location" not in slash.headers
    async with database_outage(juhe_infra.server_url, db):
        down = await client.post("/probe/outage", json={"a": 1})
        assert _is_outage_problem(down), down.text
    assert (await client.post("/probe/outage", json={"a": 1})).status_code == 200
