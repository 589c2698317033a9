"""Every error is RFC 9457 problem+json with a stable code, and a refused request changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.outbox_tables import outbox
from libs.common.testing.plugin import DatabaseFactory, RunningApps, ServiceSettings
from services.ledger.app import create_app as ledger_app


async def test_validation_unknown_route_and_bad_json_are_problems(
    migrated_database: DatabaseFactory, service_settings: ServiceSettings, running_apps: RunningApps
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db)))

    bad_currency = await client.post(
        "/v1/accounts", json={"holder_id": "m", "currency": "XXX", "kind": "k", "code": "1"}
    )
    assert bad_currency.status_code == 422
    assert bad_currency.headers["content-type"] == "application/problem+json"
    body = bad_currency.json()
    assert body["code"] == "validation_failed" and body["status"] == 422 and body["type"].endswith("validation_failed")
    assert any("currency" in e["loc"] for e in body["errors"])

    unknown = await client.get("/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["code"] == "route_not_found"
    assert unknown.headers["content-type"] == "application/problem+json"

    wrong_method = await client.delete("/v1/accounts")
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"

    garbage = await client.post("/v1/accounts", content=b"{not json", headers={"content-type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["code"] == "malformed_request"

    engine = create_async_engine(db)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(outbox))).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_trace_id_is_echoed_and_generated(
    migrated_database: DatabaseFactory, service_settings: ServiceSettings, running_apps: RunningApps
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db)))
    given = await client.get("/livez", headers={"X-Trace-Id": "abc123"})
    assert given.headers["X-Trace-Id"] == "abc123"
    generated = await client.get("/livez")
    assert len(generated.headers["X-Trace-Id"]) == 32


async def test_readyz_reports_database_and_broker(
    migrated_database: DatabaseFactory, service_settings: ServiceSettings, running_apps: RunningApps
) -> None:
    db = await migrated_database("ledger")
    client = await running_apps(ledger_app(service_settings("ledger", database_url=db)))
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    down = await running_apps(
        ledger_app(service_settings("ledger", database_url=db, kafka_bootstrap_servers="127.0.0.1:1", role="api"))
    )
    not_ready = await down.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["broker"].startswith("error")
    metrics = await client.get("/metrics")
    assert "juhe_http_requests_total" in metrics.text
