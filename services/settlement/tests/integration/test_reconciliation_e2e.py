"""Reconciliation end to end: real cashier process, real WeChat Pay sandbox, events over the real broker,
real ledger process.

A day of payments goes through the cashier; settlement keeps its records from `cashier.payments` (Kafka,
inbox); the sandbox is told to put three discrepancies in its bill; the run finds exactly those three,
and posts what the bill says the channel settled to escrow (§3.5) once, however often the day is run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from libs.common.embedded import free_port
from sandboxes.common.testing import SandboxProcess
from services.settlement.app import create_app
from services.settlement.store import reconciliation as reconciliation_store

MCHID = "1900000209"
APPID = "wxd678efh567hg6787"
WAIT_SECONDS_MAX = 30.0


@pytest.fixture(scope="module")
def wechat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    data_dir: Path = tmp_path_factory.mktemp("settlement-wechat")
    env = {"JUHE_DATA_DIR": str(data_dir), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    sandbox = SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env)
    sandbox.start()
    try:
        merchant = httpx.post(
            sandbox.base_url + "/control/merchants", json={"mchid": MCHID, "appid": APPID, "generate_key_pair": True}
        )
        merchant.raise_for_status()
        yield sandbox, merchant.json()
    finally:
        sandbox.stop()


async def wait_for(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_reconciliation_finds_exactly_the_injected_discrepancies(
    wechat: tuple[SandboxProcess, dict[str, Any]],
    migrated_database: Any,
    service_processes: Any,
    service_settings: Any,
    running_apps: Any,
    juhe_infra: Any,
    platform_topics: str,
) -> None:
    sandbox, keys = wechat
    cashier_port = free_port()
    cashier = service_processes(
        "cashier",
        {
            "database_url": await migrated_database("cashier"),
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "topic_namespace": platform_topics,
            "port": cashier_port,
            "public_base_url": f"http://127.0.0.1:{cashier_port}",
            "poll_initial_seconds": 0.3,
            "poll_backoff_max_seconds": 0.5,
            "poll_interval_seconds": 0.1,
            "outbox_poll_interval_seconds": 0.1,
        },
    )
    ledger_db = await migrated_database("ledger")
    ledger = service_processes(
        "ledger", {"database_url": ledger_db, "kafka_bootstrap_servers": juhe_infra.bootstrap, "role": "api"}
    )
    settings = service_settings(
        "settlement",
        database_url=await migrated_database("settlement"),
        cashier_url=cashier.base_url,
        ledger_url=ledger.base_url,
        role="all",
    )
    app = create_app(settings)
    settlement = await running_apps(app)
    merchant_id = f"mch_{uuid.uuid4().hex[:10]}"
    headers = {"X-Juhe-Merchant-Id": merchant_id}
    async with httpx.AsyncClient(base_url=cashier.base_url, timeout=30) as c:
        config = {
            "base_url": sandbox.base_url,
            "mchid": MCHID,
            "appid": APPID,
            "merchant_private_key_pem": keys["merchant_private_key_pem"],
            "merchant_cert_serial": keys["merchant_cert_serial"],
            "platform_public_key_pem": keys["platform_public_key_pem"],
            "platform_public_key_id": keys["platform_public_key_id"],
            "apiv3_key": keys["apiv3_key"],
        }
        assert (await c.put(f"/v1/admin/merchants/{merchant_id}", json={})).status_code == 200
        r = await c.put(f"/v1/admin/merchants/{merchant_id}/channels/wechatpay", json={"priority": 1, "config": config})
        assert r.status_code == 200, r.text

        payments: dict[str, dict[str, Any]] = {}
        for name, amount in (("ok1", 1000), ("ok2", 2000), ("dropped", 3000), ("changed", 4000), ("declined", 5000)):
            body = {
                "merchant_order_no": f"{name}-{uuid.uuid4().hex[:8]}",
                "amount_minor": amount,
                "currency": "CNY",
                "description": "Tuition",
                "scene": "native_qr",
            }
            created = await c.post("/v1/payments", json=body, headers=headers)
            assert created.status_code == 201, created.text
            payments[name] = created.json()
            out_trade_no = created.json()["attempts"][0]["out_trade_no"]
            verb = "decline" if name == "declined" else "approve"
            r = await sandbox_post(sandbox, f"/control/orders/{out_trade_no}/{verb}")
            assert r.status_code == 200, r.text

        async def all_recorded() -> bool:
            for name, p in payments.items():
                r = await settlement.get(f"/v1/settlement/payments/{p['id']}")
                want = "failed" if name == "declined" else "succeeded"
                if r.status_code != 200 or r.json()["status"] != want:
                    return False
            return True

        await wait_for(all_recorded, "settlement to record every payment from cashier events")

    bill_date = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    otn = {name: p["attempts"][0]["out_trade_no"] for name, p in payments.items()}
    for discrepancy in (
        {"kind": "drop_line", "out_trade_no": otn["dropped"]},
        {"kind": "change_amount", "out_trade_no": otn["changed"], "amount_minor": 3999},
        {"kind": "report_success", "out_trade_no": otn["declined"]},
    ):
        r = await sandbox_post(
            sandbox, f"/control/bills/{bill_date}/discrepancies", json={**discrepancy, "mchid": MCHID}
        )
        assert r.status_code in (200, 201), r.text

    r = await settlement.post(
        "/v1/settlement/reconciliations",
        json={"channel": "wechatpay", "merchant_id": merchant_id, "bill_date": bill_date},
    )
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "finished"
    assert run["counts"] == {"matched": 2, "missing_at_channel": 1, "amount_mismatch": 1, "status_mismatch": 1}
    items = (await settlement.get("/v1/settlement/reconciliation-items", params={"run_id": run["run_id"]})).json()[
        "data"
    ]
    found = {(i["outcome"], i["payment_id"]) for i in items}
    assert found == {
        ("missing_at_channel", payments["dropped"]["id"]),
        ("amount_mismatch", payments["changed"]["id"]),
        ("status_mismatch", payments["declined"]["id"]),
    }
    [mismatch] = [i for i in items if i["outcome"] == "status_mismatch"]
    assert mismatch["resolution"] == "cashier_requery"
    # the cashier re-queried the channel; the channel itself still says declined, so the payment stays
    # failed and the item stays listed for a person (only the bill line disagrees)
    assert mismatch["resolution_status"] == "requested"
    async with httpx.AsyncClient(base_url=cashier.base_url, timeout=30) as c:
        declined = await c.get(f"/v1/payments/{payments['declined']['id']}", headers=headers)
    assert declined.json()["status"] == "failed"
    [changed] = [i for i in items if i["outcome"] == "amount_mismatch"]
    assert (changed["juhe_amount_minor"], changed["channel_amount_minor"]) == (4000, 3999)
    by_order = await settlement.get(
        "/v1/settlement/reconciliation-items", params={"merchant_order_no": payments["changed"]["merchant_order_no"]}
    )
    assert [i["outcome"] for i in by_order.json()["data"]] == ["amount_mismatch"]
    report = (await settlement.get("/v1/settlement/reconciliation-report", params={"bill_date": bill_date})).json()
    assert report["channels"]["wechatpay"]["bill_lines"] == 4

    # §3.5: the channel settled the bill's net (amount less fee of every billed payment) to escrow
    assert run["error"] is None
    async with httpx.AsyncClient(base_url=cashier.base_url, timeout=30) as c:
        bill = await c.get(f"/v1/internal/bills/wechatpay/{bill_date}", params={"merchant_id": merchant_id})
    rows = [json.loads(raw) for raw in bill.text.splitlines() if raw]
    assert sorted(row["amount_minor"] for row in rows) == [1000, 2000, 3999, 5000]
    net = sum(row["amount_minor"] - row["fee_minor"] for row in rows)
    assert 0 < net < 11_999
    assert await platform_balances(ledger.base_url) == {"escrow_bank": net, "channel_clearing": -net}
    # the day run again: the same posting is replayed, nothing moves twice
    again = await settlement.post(
        "/v1/settlement/reconciliations",
        json={"channel": "wechatpay", "merchant_id": merchant_id, "bill_date": bill_date},
    )
    assert (again.json()["status"], again.json()["error"], again.json()["counts"]) == ("finished", None, run["counts"])
    assert await platform_balances(ledger.base_url) == {"escrow_bank": net, "channel_clearing": -net}
    # the channel unreachable: the run fails as a problem, is kept as failed, and nothing moves
    async with httpx.AsyncClient() as client:
        assert (await client.put(sandbox.base_url + "/control/faults", json={"error_rate": 1.0})).status_code == 200
        try:
            failed = await settlement.post(
                "/v1/settlement/reconciliations",
                json={"channel": "wechatpay", "merchant_id": merchant_id, "bill_date": bill_date},
            )
        finally:
            await client.put(sandbox.base_url + "/control/faults", json={"error_rate": 0.0})
    assert (failed.status_code, failed.json()["code"]) == (502, "bill_unavailable"), failed.text
    report = (await settlement.get("/v1/settlement/reconciliation-report", params={"bill_date": bill_date})).json()
    assert report["channels"]["wechatpay"]["runs"] == 2  # finished runs only
    async with app.state.runtime.uow.read() as conn:
        runs = await reconciliation_store.runs_of_day(conn, date.fromisoformat(bill_date))
    assert [(r["status"], r["error"] is not None) for r in runs] == [("finished", False)] * 2 + [("failed", True)]
    assert await platform_balances(ledger.base_url) == {"escrow_bank": net, "channel_clearing": -net}
    verified = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ledger.verify", "--database-url", ledger_db],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def platform_balances(ledger_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=ledger_url) as ledger:
        page = (await ledger.get("/v1/accounts", params={"holder_id": "platform", "limit": 100})).json()
    return {a["kind"]: int(a["balances"]["posted_balance_minor"]) for a in page["accounts"]}


async def sandbox_post(sandbox: SandboxProcess, path: str, json: Any = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(sandbox.base_url + path, params={"mchid": MCHID}, json=json)
