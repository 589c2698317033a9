"""Text no store can hold (U+0000, lone surrogates) is the caller's 422, never the service's 500, and changes
nothing: refused at the boundary (path, query, headers, JSON body) and, past it, when PostgreSQL or an encoder
refuses it (defence in depth)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
from fastapi import APIRouter
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.db import asyncpg_dsn
from libs.common.failures import is_unstorable_text_error
from libs.common.outbox_tables import outbox
from libs.common.testing.plugin import DatabaseFactory
from libs.common.web import RuntimeDep, UowDep, create_service_app
from services.ledger.app import create_app as ledger_app


def _probe_router() -> APIRouter:
    """Routes that hand client strings to PostgreSQL the way services do (text filter, jsonb, raw asyncpg)."""
    router = APIRouter()

    @router.get("/probe/text")
    async def probe_text(uow: UowDep, value: str) -> dict[str, Any]:
        async with uow.begin() as tx:
            tx.publish(topic="probe", type="probe.seen", subject="s1", data={"n": 1})  # must roll back
            row = (await tx.conn.execute(text("SELECT length(CAST(:v AS text))"), {"v": value})).scalar_one()
        return {"length": row}

    @router.get("/probe/jsonb")
    async def probe_jsonb(uow: UowDep, value: str) -> dict[str, Any]:
        async with uow.begin() as tx:
            doc = json.dumps({"v": value})  # U+0000 becomes the JSON escape \u0000
            row = (await tx.conn.execute(text("SELECT CAST(:d AS jsonb) ->> 'v'"), {"d": doc})).scalar_one()
        return {"value": row}

    @router.get("/probe/asyncpg")
    async def probe_asyncpg(runtime: RuntimeDep, value: str) -> dict[str, Any]:
        conn = await asyncpg.connect(asyncpg_dsn(runtime.settings.database_url))
        try:
            return {"value": await conn.fetchval("SELECT $1::text", value)}
        finally:
            await conn.close()

    @router.get("/probe/jsonb-document")
    async def probe_jsonb_document(uow: UowDep, doc: str) -> dict[str, Any]:
        async with uow.begin() as tx:  # PostgreSQL parses the JSON itself: a lone surrogate escape is 22P02
            return {"value": (await tx.conn.execute(text("SELECT CAST(:d AS jsonb)"), {"d": doc})).scalar_one()}

    @router.post("/probe/encode")
    async def probe_encode(body: dict[str, str]) -> dict[str, Any]:
        return {"length": len(body["value"].encode())}  # a hash or an envelope encoding a lone surrogate

    @router.get("/probe/other-db-error")
    async def probe_other(uow: UowDep) -> dict[str, Any]:
        async with uow.read() as conn:
            return {"value": (await conn.execute(text("SELECT 1 / 0"))).scalar_one()}

    return router


async def _outbox_count(db: str) -> int:
    engine = create_async_engine(db)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(outbox))).scalar_one())
    finally:
        await engine.dispose()


async def test_nul_in_text_jsonb_and_raw_asyncpg_is_422(
    migrated_database: DatabaseFactory, service_settings: Callable[..., Any]
) -> None:
    db = await migrated_database("ledger")
    app = create_service_app(  # without the boundary rule: what the database layer does on its own
        service_settings("ledger", database_url=db, role="api"),
        title="probe",
        routers=[_probe_router()],
        refuse_unstorable_text=False,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe.test") as client:
            fine = await client.get("/probe/text", params={"value": "abc"})
            assert fine.status_code == 200 and fine.json() == {"length": 3}
            assert await _outbox_count(db) == 1

            for path in ("/probe/text", "/probe/jsonb", "/probe/asyncpg"):
                refused = await client.get(path, params={"value": "a\x00b"})
                assert refused.status_code == 422, (path, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                body = refused.json()
                assert body["code"] == "validation_failed" and body["status"] == 422
            assert await _outbox_count(db) == 1  # the refused transactions rolled back their events
            for refused in (
                await client.get("/probe/jsonb-document", params={"doc": '{"a": "\\udfff"}'}),
                await client.post("/probe/encode", content=b'{"value": "\\udfff"}'),
            ):
                assert refused.status_code == 422, refused.text
                assert refused.json()["code"] == "validation_failed"

            other = await client.get("/probe/other-db-error")  # any other database error is still a 500
            assert other.status_code == 500 and other.json()["code"] == "internal_error"


async def test_ledger_list_filter_with_nul_is_422(
    migrated_database: DatabaseFactory, service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db, role="api")))
    refused = await client.get("/v1/accounts", params={"holder_id": "mch\x00x"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation_failed"
    fine = await client.get("/v1/accounts", params={"holder_id": "mch_x"})
    assert fine.status_code == 200 and fine.json()["data"] == []


def test_recognises_wrapped_and_bare_errors() -> None:
    bare = asyncpg.CharacterNotInRepertoireError("invalid byte sequence")
    assert is_unstorable_text_error(bare)
    assert is_unstorable_text_error(asyncpg.UntranslatableCharacterError("unsupported escape"))

    class Adapted(Exception):
        sqlstate = "22021"

    class Wrapper(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("wrapped")
            self.orig = orig

    assert is_unstorable_text_error(Wrapper(Adapted()))
    assert not is_unstorable_text_error(asyncpg.DivisionByZeroError("division by zero"))
    assert not is_unstorable_text_error(ValueError("x"))


BAD_BODIES: list[tuple[str, bytes]] = [
    ("string", b'{"holder_id": "mch_\\udfff", "currency": "CNY", "kind": "k", "code": "2201"}'),
    ("nul", b'{"holder_id": "mch_\\u0000", "currency": "CNY", "kind": "k", "code": "2201"}'),
    (
        "raw-surrogate",
        '{"holder_id": "mch_\udfff", "currency": "CNY", "kind": "k", "code": "2201"}'.encode("utf-8", "surrogatepass"),
    ),
    ("key", b'{"holder_id": "mch_a", "currency": "CNY", "kind": "k", "code": "2201", "metadata": {"\\udfff": 1}}'),
    (
        "nested",
        b'{"holder_id": "mch_a", "currency": "CNY", "kind": "k", "code": "2201",'
        b' "metadata": {"a": [{"b": "x\\ud800"}]}}',
    ),
]


async def test_unstorable_text_is_refused_at_the_boundary_of_a_service(
    migrated_database: DatabaseFactory, service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db, role="api")))
    json_type = {"content-type": "application/json"}
    refused: list[httpx.Response] = []
    for _, bad in BAD_BODIES:
        refused.append(await client.post("/v1/accounts", content=bad, headers=json_type))
    refused.append(await client.get("/v1/accounts?holder_id=mch_%ED%BF%BF"))
    refused.append(await client.get("/v1/accounts?holder_id=mch_%00"))
    refused.append(await client.get("/v1/accounts/acc_%00x"))
    refused.append(await client.get("/v1/accounts/acc_%ED%A0%80"))
    good = b'{"holder_id": "mch_a", "currency": "CNY", "kind": "k", "code": "2201"}'
    refused.append(await client.post("/v1/accounts", content=good, headers={**json_type, "x-note": "a\x00b"}))
    for response in refused:
        assert response.status_code == 422, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "validation_failed" and body["errors"][0]["type"] == "string_unstorable_character"
    assert await _outbox_count(db) == 0  # nothing was written

    # Proper text passes: a surrogate pair (an emoji), CJK, an escaped backslash before "u0000".
    text_ok = '{"holder_id": "mch_\\ud83d\\ude00支付\\\\u0000", "currency": "CNY", "kind": "k", "code": "2201"}'
    fine = await client.post("/v1/accounts", content=text_ok.encode(), headers=json_type)
    assert fine.status_code == 201, fine.text
    assert fine.json()["holder_id"] == "mch_😀支付\\u0000"


async def test_a_trailing_slash_is_not_redirected(
    migrated_database: DatabaseFactory, service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db, role="api")))
    for path in ("/v1/accounts/", "/v1/accounts/acc_x/"):
        response = await client.get(path)
        assert response.status_code == 404 and response.json()["code"] == "route_not_found", response.text
        assert "location" not in response.headers
