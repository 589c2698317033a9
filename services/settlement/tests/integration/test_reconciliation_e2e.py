"""Reconciliation end to end: real cashier process, real WeChat Pay sandbox, events over the real broker,
real ledger process.

A day of payments goes through the cashier; settlement keeps its records from `cashier.payments` (Kafka,
inbox); the sandbox is told to put three discrepancies in its bill; the run finds exactly those three,
and posts what the bill says the channel settled to escrow (§3.5) once, however often the day is run.
Then, on the same processes, payments with merchant-funded channel coupons (a WeChat 免充值 代金券 with a partial
refund, an Alipay 商家券) are reconciled against the sandboxes' real bills and all match: the bills print what
the channel settles (应结订单金额 / 退款金额, 商家实收), which is what settlement compares (docs/ledger.md §3.15).
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
from unittest import mock
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core

from libs.common.embedded import free_port
from sandboxes.common.testing import SandboxProcess
from services.cashier.connectors.alipay import AlipayConfig, AlipayConnector
from services.settlement.app import create_app
from services.settlement.store import reconciliation as reconciliation_store
from services.settlement.store.tables import refund_records, settlement_entries

MCHID = "1900000209"
COUPON_MCHID = "1900000210"  # the merchant of the coupon payments: a bill of its own
APPID = "wxd678efh567hg6787"
BUYER = "2088102146225135"
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


@pytest.fixture(scope="module")
def alipay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("settlement-alipay")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.alipay", port_env="JUHE_SANDBOX_ALIPAY_PORT", env=env) as sandbox:
        app = httpx.post(sandbox.base_url + "/control/apps", json={})
        app.raise_for_status()
        yield sandbox, app.json()


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
    alipay: tuple[SandboxProcess, dict[str, Any]],
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
    await merchant_funded_channel_coupons_match_the_bills(wechat, alipay, cashier.base_url, settlement, app, bill_date)
    verified = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ledger.verify", "--database-url", ledger_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def merchant_funded_channel_coupons_match_the_bills(
    wechat: tuple[SandboxProcess, dict[str, Any]],
    alipay: tuple[SandboxProcess, dict[str, Any]],
    cashier_url: str,
    settlement: httpx.AsyncClient,
    app: Any,
    bill_date: str,
) -> None:
    """A WeChat 免充值 (NOCASH) 代金券 the merchant created (10.00 off 120.00) and a partial refund of that payment
    (60.00: 5.00 of it goes back as the coupon), and an Alipay 商家券 (10.00 off 120.00): each bill prints what the
    channel settles (应结订单金额 110.00, 退款金额 55.00 with 申请退款金额 60.00, 商家实收 110.00 with 商家优惠 10.00)
    and settlement matches every line on Juhe's amount less the coupon's unsettled part."""
    wechat_sandbox, alipay_sandbox = wechat[0], alipay[0]
    async with httpx.AsyncClient(timeout=30) as http:
        registered = await http.post(
            wechat_sandbox.base_url + "/control/merchants",
            json={"mchid": COUPON_MCHID, "appid": APPID, "generate_key_pair": True},
        )
    registered.raise_for_status()
    keys, alipay_app = registered.json(), alipay[1]
    merchant_id = f"mch_{uuid.uuid4().hex[:10]}"
    headers = {"X-Juhe-Merchant-Id": merchant_id}
    wechat_config = {
        "base_url": wechat_sandbox.base_url,
        "mchid": COUPON_MCHID,
        "appid": APPID,
        **{
            k: keys[k]
            for k in (
                "merchant_private_key_pem",
                "merchant_cert_serial",
                "platform_public_key_pem",
                "platform_public_key_id",
                "apiv3_key",
            )
        },
    }
    alipay_config = {
        "gateway_url": alipay_sandbox.base_url + "/gateway.do",
        **{k: alipay_app[k] for k in ("app_id", "app_private_key_pem", "alipay_public_key_pem", "seller_id")},
    }
    openid = f"oNocash{uuid.uuid4().hex[:12]}"
    coupon_id = await asyncio.to_thread(_merchant_nocash_coupon, wechat_sandbox, keys, openid)
    voucher_code = await _merchant_voucher(alipay_config)
    async with httpx.AsyncClient(base_url=cashier_url, headers=headers, timeout=30) as c:
        assert (await c.put(f"/v1/admin/merchants/{merchant_id}", json={})).status_code == 200
        for channel, config in (("wechatpay", wechat_config), ("alipay", alipay_config)):
            r = await c.put(
                f"/v1/admin/merchants/{merchant_id}/channels/{channel}", json={"priority": 1, "config": config}
            )
            assert r.status_code == 200, r.text
        paid: dict[str, dict[str, Any]] = {}
        for channel, approve in (
            (
                "wechatpay",
                (
                    f"{wechat_sandbox.base_url}/control/orders/{{}}/approve",
                    {"mchid": COUPON_MCHID},
                    {"payer_openid": openid, "coupon_id": coupon_id},
                ),
            ),
            (
                "alipay",
                (
                    f"{alipay_sandbox.base_url}/control/trades/{{}}/approve",
                    {"app_id": alipay_app["app_id"], "voucher_code": voucher_code},
                    None,
                ),
            ),
        ):
            body = {
                "merchant_order_no": f"cpn-{uuid.uuid4().hex[:8]}",
                "amount_minor": 12_000,
                "currency": "CNY",
                "description": "Tuition",
                "scene": "native_qr",
                "preferred_channels": [channel],
            }
            created = await c.post("/v1/payments", json=body)
            assert created.status_code == 201, created.text
            url, params, payer = approve
            out_trade_no = created.json()["attempts"][0]["out_trade_no"]
            approved = await c.post(url.format(out_trade_no), params=params, json=payer)
            assert approved.status_code == 200, approved.text
            paid[channel] = created.json()

        async def succeeded() -> bool:
            views = [(await c.get(f"/v1/payments/{p['id']}")).json() for p in paid.values()]
            return all(v["status"] == "succeeded" for v in views)

        await wait_for(succeeded, "both coupon payments to succeed")
        view = (await c.get(f"/v1/payments/{paid['wechatpay']['id']}")).json()
        assert view["channel_discount"]["unsettled_minor"] == 1_000  # 免充值: WeChat settles 110.00
        refund = await c.post(f"/v1/payments/{paid['wechatpay']['id']}/refunds", json={"amount_minor": 6_000})
        assert refund.status_code == 201, refund.text
        refund_id = refund.json()["id"]
        approved = await c.post(
            f"{wechat_sandbox.base_url}/control/refunds/{refund_id}/approve", params={"mchid": COUPON_MCHID}
        )
        assert approved.status_code == 200, approved.text

    async def recorded() -> bool:
        async with app.state.runtime.uow.read() as conn:
            keys = set((await conn.execute(select(settlement_entries.c.source_key))).scalars())
            status = await conn.scalar(select(refund_records.c.status).where(refund_records.c.refund_id == refund_id))
        wanted = {f"{p['id']}:unsettled" for p in paid.values()} | {f"{refund_id}:unsettled"}
        return wanted <= keys and status == "succeeded"

    await wait_for(recorded, "settlement to record both payments, the refund and their unsettled coupon parts")
    for channel, lines in (("wechatpay", 2), ("alipay", 1)):
        r = await settlement.post(
            "/v1/settlement/reconciliations",
            json={"channel": channel, "merchant_id": merchant_id, "bill_date": bill_date},
        )
        assert r.status_code == 201, r.text
        assert (r.json()["status"], r.json()["counts"]) == ("finished", {"matched": lines}), (channel, r.json())
    async with httpx.AsyncClient(base_url=cashier_url, timeout=30) as c:
        wechat_bill = await c.get(f"/v1/internal/bills/wechatpay/{bill_date}", params={"merchant_id": merchant_id})
        alipay_bill = await c.get(f"/v1/internal/bills/alipay/{bill_date}", params={"merchant_id": merchant_id})
    wechat_rows = {row["kind"]: row for row in map(json.loads, wechat_bill.text.splitlines())}
    assert (wechat_rows["payment"]["amount_minor"], wechat_rows["refund"]["amount_minor"]) == (11_000, 5_500)
    [alipay_row] = [json.loads(raw) for raw in alipay_bill.text.splitlines() if raw]
    assert alipay_row["amount_minor"] == 11_000


def _merchant_nocash_coupon(sandbox: SandboxProcess, keys: dict[str, Any], openid: str) -> str:
    """The merchant's own 免充值 stock (10.00 off from 100.00), created, started and one coupon sent to `openid`
    through the wechatpayv3 SDK, as a merchant's system does."""
    from datetime import datetime, timedelta

    with mock.patch.object(Core, "_init_certificates", lambda self: None):
        wx = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=COUPON_MCHID,
            private_key=keys["merchant_private_key_pem"],
            cert_serial_no=keys["merchant_cert_serial"],
            appid=APPID,
            apiv3_key=keys["apiv3_key"],
            notify_url="https://example.invalid/notify",
            public_key=keys["platform_public_key_pem"],
            public_key_id=keys["platform_public_key_id"],
        )
    wx._core._gate_way = sandbox.base_url
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    code, stock = wx.marketing_favor_stock_create(
        stock_name="免充值满100减10",
        belong_merchant=COUPON_MCHID,
        no_cash=True,
        available_begin_time=now.isoformat(timespec="seconds"),
        available_end_time=(now + timedelta(days=7)).isoformat(timespec="seconds"),
        stock_use_rule={"max_coupons": 1, "max_amount": 1000, "max_coupons_per_user": 1},
        coupon_use_rule={
            "available_merchants": [COUPON_MCHID],
            "fixed_normal_coupon": {"coupon_amount": 1000, "transaction_minimum": 10000},
        },
        out_request_no=f"stk{uuid.uuid4().hex[:12]}",
    )
    assert code == 200, stock
    stock_id = json.loads(stock)["stock_id"]
    assert wx.marketing_favor_stock_start(COUPON_MCHID, stock_id)[0] == 200
    code, sent = wx.marketing_favor_stock_send(
        stock_id, openid, f"snd{uuid.uuid4().hex[:12]}", COUPON_MCHID, appid=APPID
    )
    assert code == 200, sent
    coupon_id: str = json.loads(sent)["coupon_id"]
    return coupon_id


async def _merchant_voucher(alipay_config: dict[str, Any]) -> str:
    """The merchant's own 商家券 2.0 activity (10.00 off from 100.00) and one voucher sent to BUYER, signed as
    the merchant's app (the cashier connector's request signing)."""
    from datetime import datetime, timedelta

    connector = AlipayConnector(AlipayConfig.model_validate(alipay_config))
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    try:
        created = await connector._call(
            "alipay.marketing.activity.ordervoucher.create",
            {
                "out_biz_no": f"act{uuid.uuid4().hex[:12]}",
                "activity_name": "满100减10",
                "code_mode": "MERCHANT_API",
                "voucher_send_mode_info": {
                    "voucher_send_mode": "REQUEST",
                    "voucher_send_rule_info": {"quantity": 1, "quantity_limit_per_user": 1},
                },
                "voucher_deduct_info": {
                    "voucher_type": "FIX_VOUCHER",
                    "fix_voucher_info": {"amount": "10.00", "floor_amount": "100.00"},
                },
                "voucher_use_rule_info": {
                    "voucher_use_time_info": {
                        "period_type": "ABSOLUTE",
                        "absolute_period_info": {
                            "valid_begin_time": (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
                            "valid_end_time": (now + timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S"),
                        },
                    }
                },
            },
        )
        assert created.get("activity_id"), created
        sent = await connector._call(
            "alipay.marketing.activity.ordervoucher.send",
            {
                "activity_id": created["activity_id"],
                "out_biz_no": f"snd{uuid.uuid4().hex[:12]}",
                "user_id": BUYER,
            },
        )
    finally:
        await connector.aclose()
    assert sent.get("voucher_code"), sent
    voucher_code: str = sent["voucher_code"]
    return voucher_code


async def platform_balances(ledger_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=ledger_url) as ledger:
        page = (await ledger.get("/v1/accounts", params={"holder_id": "platform", "limit": 100})).json()
    return {a["kind"]: int(a["balances"]["posted_balance_minor"]) for a in page["data"]}


async def sandbox_post(sandbox: SandboxProcess, path: str, json: Any = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(sandbox.base_url + path, params={"mchid": MCHID}, json=json)
