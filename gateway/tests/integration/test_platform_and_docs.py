"""The gateway's own surface: the merged OpenAPI, the demo seed, the internal endpoint, pruning, and the
real cashier behind it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from juhe_sdk import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.flows.seed import seed_demo_async
from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, StackFactory
from gateway.tests.integration.servers import ThreadServer
from gateway.worker import prune_once
from libs.common.db import UnitOfWork
from libs.common.internal_auth import mint_identity_token
from libs.common.web import Runtime


async def test_one_openapi_for_the_public_api(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        doc = (await raw.get("/openapi.json")).json()
        docs_page = await raw.get("/docs")
    assert docs_page.status_code == 200 and "/openapi.json" in docs_page.text
    paths = doc["paths"]
    # From the upstream service, filtered to public paths (its hidden route and health stay out).
    assert {"/v1/payments", "/v1/payments/{payment_id}", "/v1/payments/{payment_id}/close"} <= set(paths)
    assert "/v1/payments/-/whoami" not in paths and "/livez" not in paths
    # The gateway's own platform API, behind the platform bearer.
    assert paths["/v1/platform/merchants"]["post"]["security"] == [{"PlatformBearer": []}]
    create = paths["/v1/payments"]["post"]
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in create["parameters"]
    assert {"401", "403", "409", "429"} <= set(create["responses"])
    assert {"JuheHmac": []} in create["security"] and create["x-juhe-service"] == "cashier"
    for item in paths.values():
        for op in item.values():
            for param in op.get("parameters", []):
                assert not str(param.get("name", "")).lower().startswith("x-juhe-")
    codes = {e["code"] for e in doc["x-error-codes"]}
    assert {"signature_invalid", "nonce_reused", "idempotency_key_reused", "rate_limited", "not_found"} <= codes
    assert "PaymentCreateRequest" in doc["components"]["schemas"]
    assert set(doc["x-juhe-unavailable-services"]) == {"ledger", "routing", "settlement", "marketing", "migration"}
    assert "JUHE-HMAC-SHA256" in doc["components"]["securitySchemes"]["JuheHmac"]["description"]


async def test_seed_is_idempotent_and_stores_no_plaintext(make_stack: StackFactory, tmp_path: Path) -> None:
    stack: Stack = await make_stack()
    path = tmp_path / "again.json"
    first = await seed_demo_async(stack.database_url, path, settings=stack.settings)
    second = await seed_demo_async(stack.database_url, path, settings=stack.settings)
    assert first["created"] is True and second["created"] is False
    assert {k: v for k, v in first.items() if k != "created"} == {k: v for k, v in second.items() if k != "created"}
    assert json.loads(path.read_text())["secret"] == first["secret"]
    assert path.stat().st_mode & 0o077 == 0
    # The keys from the file work through the gateway.
    juhe = stack.merchant(first["key_id"], first["secret"])
    assert (await juhe.payments.create(amount_minor=1, currency="CNY"))["merchant_id"] == "mch_demo"
    # A lost key file: demo keys are re-issued, the old ones revoked.
    path.unlink()
    third = await seed_demo_async(stack.database_url, path, settings=stack.settings)
    assert third["created"] is True and third["secret"] != first["secret"]
    with pytest.raises(Exception) as revoked:
        await juhe.payments.create(amount_minor=1, currency="CNY")
    assert getattr(revoked.value, "code", None) == "api_key_revoked"
    # No secret of any seed run appears anywhere in the database.
    secrets = [
        s[k] for s in (first, third, stack.keys) for k in ("admin_key", "secret", "webhook_secret", "user_token")
    ]
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as conn:
            dump = ""
            for table in ("platforms", "merchants", "users", "api_keys", "user_tokens"):
                rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
                dump += repr(rows)
        for secret in secrets:
            assert secret.partition(".")[2] or secret
            assert (secret.partition(".")[2] or secret) not in dump
            assert secret.encode().hex() not in dump
    finally:
        await engine.dispose()


async def test_internal_webhook_secret_endpoint_is_for_services_only(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    path = "/internal/v1/merchants/mch_demo/webhook-secret"
    service_token = mint_identity_token(INTERNAL_SECRET, key_id="svc", service="cashier")
    merchant_token = mint_identity_token(INTERNAL_SECRET, key_id="k", merchant_id="mch_demo")
    forged = mint_identity_token("not-the-secret", key_id="svc", service="cashier")
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        ok = await raw.get(path, headers={"X-Juhe-Identity": service_token})
        as_merchant = await raw.get(path, headers={"X-Juhe-Identity": merchant_token})
        with_forgery = await raw.get(path, headers={"X-Juhe-Identity": forged})
        dev_header = await raw.get(path, headers={"X-Juhe-Merchant-Id": "mch_demo"})
    assert ok.status_code == 200 and ok.json()["webhook_secret"] == stack.keys["webhook_secret"]
    assert as_merchant.status_code == 403 and as_merchant.json()["code"] == "route_forbidden"
    assert with_forgery.status_code == 401 and with_forgery.json()["code"] == "identity_invalid"
    assert dev_header.status_code == 403


async def test_prune_removes_only_expired_guard_rows(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    juhe = stack.merchant()
    await juhe.payments.create(amount_minor=1, currency="CNY")
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO request_nonces VALUES ('key_x', 'old-nonce-1', now() - interval '1 minute')")
            )
            await conn.execute(
                text(
                    "INSERT INTO idempotency_records (scope, key, request_hash, state, expires_at) "
                    "VALUES ('merchant:m', 'old', '\\x00', 'done', now() - interval '1 second')"
                )
            )
        runtime = Runtime(settings=stack.settings, engine=engine, uow=UnitOfWork(engine, source="gateway"))
        assert await prune_once(runtime, batch_max=1) == 2
        async with engine.connect() as conn:
            nonces = (await conn.execute(text("SELECT count(*) FROM request_nonces"))).scalar_one()
            records = (await conn.execute(text("SELECT count(*) FROM idempotency_records"))).scalar_one()
        assert nonces == 1 and records == 1  # the live ones from the request above
    finally:
        await engine.dispose()


async def test_the_real_cashier_behind_the_gateway(
    make_stack: StackFactory, migrated_database: Any, service_settings: Any
) -> None:
    from services.cashier.app import create_app as cashier_app

    cashier_db = await migrated_database("cashier")
    settings = service_settings("cashier", database_url=cashier_db, role="api", internal_token_secret=INTERNAL_SECRET)
    cashier = ThreadServer(cashier_app(settings)).start()
    try:
        stack: Stack = await make_stack(cashier_url=cashier.base_url, rate_limit_admin_max=100)
        juhe = stack.merchant()
        page = await juhe.request("GET", "/v1/payments")
        assert page["data"] == [] and page["next_cursor"] is None
        with pytest.raises(NotFoundError) as missing:
            await juhe.payments.retrieve("pay_0193" + "0" * 28)
        assert missing.value.code == "payment_not_found"
        # The platform operator reaches the cashier's admin API; a merchant cannot.
        admin = stack.admin()
        configured = await admin.request(
            "PUT", "/v1/admin/merchants/mch_demo", json={"webhook_secret": stack.keys["webhook_secret"]}
        )
        assert configured["merchant_id"] == "mch_demo"
        with pytest.raises(Exception) as forbidden:
            await juhe.request("GET", "/v1/admin/merchants/mch_demo")
        assert getattr(forbidden.value, "code", None) == "route_forbidden"
        async with httpx.AsyncClient(base_url=stack.url) as raw:
            doc = (await raw.get("/openapi.json")).json()
        assert doc["paths"]["/v1/admin/merchants/{merchant_id}"]["put"]["security"] == [{"PlatformBearer": []}]
        assert "/v1/payments/{payment_id}/refunds" in doc["paths"]
    finally:
        cashier.stop()
