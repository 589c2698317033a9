"""Migrated merchants can take payments right after finalisation: the run's merchants get their gateway
identity and API key and a routing contract (from the Alipay sub-merchant id the file carried), all through
the gateway's platform API; the merchant's new key then pays an Alipay QR through the gateway and a real
cashier. Provisioning again changes nothing; an unfinalised run is refused.

One ledger (in this process), the gateway with a real cashier and a real routing app, the Alipay sandbox.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import gateway.tests.conftest  # noqa: F401 - puts the SDK (its source folder) on the path
from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, make_stack
from gateway.tests.integration.with_cashier import (
    AlipaySandbox,
    alipay,
    open_alipay_channel,
    paid_alipay_qr,
    stack_with_cashier,
)
from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from libs.common.testing.infra import serve_app
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.waiting import eventually
from services.ledger.app import create_app as ledger_app
from services.migration.clients.ledger import LedgerClient
from services.migration.clients.platform import PlatformClient
from services.migration.domain.rows import Kind, juhe_holder_id
from services.migration.flows import provision as access
from services.migration.flows import runs as flow
from services.migration.tests import generate as g
from services.routing.app import create_app as routing_app

__all__ = ["alipay", "make_stack", "stack_with_cashier"]  # fixtures used here
pytestmark = pytest.mark.timeout(600)
PLATFORM = "provision-test"
ROUTE: dict[str, Any] = {
    "route_id": "ali_sp_migrated",
    "method": "alipay",
    "scenes": ["native_qr"],
    "kind": "service_provider",
    "provider": "alipay",
    "connector": "alipay",
    "config_ref": "cfg/ali_sp_migrated",
}


@pytest.fixture
async def migration(
    migrated_database: DatabaseFactory, service_settings: Any, juhe_infra: Any
) -> AsyncIterator[flow.Migration]:
    """A ledger app served in this process and the migration's flows over their own database."""
    settings = service_settings(
        "ledger",
        database_url=await migrated_database("ledger"),
        role="api",
        kafka_bootstrap_servers=juhe_infra.bootstrap,
    )
    engine = create_async_engine(await migrated_database("migration"))
    async with serve_app(ledger_app(settings), name="the ledger") as ledger_url:
        ledger = LedgerClient(ledger_url, timeout_seconds=60)
        try:
            yield flow.Migration(UnitOfWork(engine, source="migration"), ledger, PLATFORM)
        finally:
            await ledger.close()
            await engine.dispose()


async def test_migrated_merchants_take_payments_after_finalise(
    migration: flow.Migration,
    stack_with_cashier: Stack,
    alipay: AlipaySandbox,
    migrated_database: DatabaseFactory,
    service_settings: Any,
    tmp_path: Path,
) -> None:
    stack = stack_with_cashier
    data = g.clean_dataset(tmp_path / "files", base=40_000, merchants=2, persons=1)
    run_id = await flow.start(
        migration, flow.RunFiles(data.merchants, data.persons, data.balances, data.control), dry_run=False
    )
    credentials = tmp_path / "keys.jsonl"
    routing_settings = service_settings(
        "routing", database_url=await migrated_database("routing"), role="api", internal_token_secret=INTERNAL_SECRET
    )
    async with serve_app(routing_app(routing_settings), name="routing") as routing_url:
        gateway = stack.start_gateway(routing_url=routing_url)  # a replica that reaches routing
        platform = PlatformClient(gateway.base_url, stack.keys["admin_key"], timeout_seconds=30)
        try:
            async with httpx.AsyncClient(base_url=gateway.base_url) as http:
                headers = {"Authorization": f"Bearer {stack.keys['admin_key']}", "Idempotency-Key": "route-1"}
                created = await http.post("/v1/channel-routes", json=ROUTE, headers=headers)
                assert created.status_code == 201, created.text
            routes = {"alipay": ROUTE["route_id"]}
            with pytest.raises(Problem) as early:  # reversible still: no merchant may take payments yet
                await access.provision(migration, platform, run_id, routes=routes, credentials=credentials)
            assert early.value.spec.code == "run_state_invalid" and not credentials.exists()

            await flow.finalise(migration, run_id)
            result = await access.provision(migration, platform, run_id, routes=routes, credentials=credentials)
            issued = ("merchants", "keys_issued", "test_keys_issued", "contracts_created")
            assert tuple(result[k] for k in issued) == (2, 2, 2, 2)
            assert result["conflicts"] == [] and credentials.stat().st_mode & 0o077 == 0
            lines = [json.loads(line) for line in credentials.read_text().splitlines()]
            merchant_ids = [juhe_holder_id(PLATFORM, Kind.MERCHANTS, f"M{40_000 + i}") for i in range(2)]
            # Each merchant: its live key (with the webhook secret), then a test key to integrate against sandboxes.
            assert [(k["merchant_id"], k["mode"]) for k in lines] == [
                (m, mode) for m in merchant_ids for mode in ("live", "test")
            ]
            assert all(k["key_id"].startswith(f"key_{k['mode']}_") for k in lines) and "webhook_secret" in lines[0]
            keys = [k for k in lines if k["mode"] == "test"]
            for i, merchant_id in enumerate(merchant_ids):
                status, contract = await platform.contract(merchant_id, ROUTE["route_id"])
                assert status == 200 and contract["sub_merchant_id"] == g.merchant(40_000 + i)["alipay_smid"]

            again = await access.provision(migration, platform, run_id, routes=routes, credentials=credentials)
            assert tuple(again[k] for k in issued) == (2, 0, 0, 0)
            assert len(credentials.read_text().splitlines()) == 4
        finally:
            await platform.close()

    # The first migrated merchant takes a test payment with its new test key at the sandbox, through the gateway.
    merchant_id, key = keys[0]["merchant_id"], keys[0]
    await open_alipay_channel(stack, merchant_id, alipay)
    juhe = stack.merchant(key_id=key["key_id"], secret=key["secret"])
    paid = await paid_alipay_qr(juhe, alipay, "First payment after migration")

    async def succeeded() -> bool:
        payment = await juhe.request("GET", f"/v1/payments/{paid['id']}")
        return payment["status"] == "succeeded"

    await eventually(succeeded, "the migrated merchant's payment succeeded")
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:  # and the key is really that merchant's
        assert (await anonymous.get(f"/v1/payments/{paid['id']}")).status_code == 401
