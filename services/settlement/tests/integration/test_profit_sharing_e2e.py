"""Channel profit sharing (docs/contracts.md §2) end to end: a real cashier process and the real WeChat Pay sandbox, a
real ledger process, settlement in-process. The payment events are the cashier's own (read from its
outbox) applied through the very handler the inbox consumer calls."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.embedded import free_port
from libs.common.events import Envelope
from sandboxes.common.testing import SandboxProcess
from services.settlement.clients.cashier import CashierClient
from services.settlement.config import Settings
from services.settlement.flows.profit_sharing import ChannelSharing
from services.settlement.flows.settle import run_cycle, today
from services.settlement.flows.splits import post_due_splits
from services.settlement.store import profit_sharing as orders
from services.settlement.tests.integration.conftest import Harness
from services.settlement.tests.integration.served import eventually

MCHID, APPID = "1900000409", "wxd678efh567hg6787"
TEACHER_MCHID = "1900000411"


@pytest.fixture(scope="module")
def wechat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProcess, dict[str, Any]]]:
    env = {"JUHE_DATA_DIR": str(tmp_path_factory.mktemp("ps-e2e-wechat")), "JUHE_SANDBOX_NOTIFY_SCALE": "0.001"}
    with SandboxProcess("sandboxes.wechatpay", port_env="JUHE_SANDBOX_WECHATPAY_PORT", env=env) as sandbox:
        merchant = httpx.post(
            sandbox.base_url + "/control/merchants", json={"mchid": MCHID, "appid": APPID, "generate_key_pair": True}
        )
        merchant.raise_for_status()
        yield sandbox, merchant.json()


@dataclass
class Env:
    h: Harness
    cashier: httpx.AsyncClient
    cashier_db: str
    sandbox: SandboxProcess
    merchant_id: str

    @property
    def sharing(self) -> ChannelSharing:
        sharing: ChannelSharing = self.h.context.profit_sharing
        return sharing

    @property
    def settings(self) -> Settings:
        settings = self.h.context.settings
        return settings

    async def paid(self, amount_minor: int, *, profit_sharing: bool) -> str:
        """A payment through the cashier, approved in the sandbox, succeeded at the cashier."""
        body = {
            "merchant_order_no": f"ps-{uuid.uuid4().hex[:8]}",
            "amount_minor": amount_minor,
            "currency": "CNY",
            "description": "Tuition",
            "scene": "native_qr",
            "profit_sharing": profit_sharing,
        }
        headers = {"X-Juhe-Merchant-Id": self.merchant_id}
        created = await self.cashier.post("/v1/payments", json=body, headers=headers)
        assert created.status_code == 201, created.text
        payment_id = str(created.json()["id"])
        async with httpx.AsyncClient() as plain:
            out_trade_no = created.json()["attempts"][0]["out_trade_no"]
            r = await plain.post(
                f"{self.sandbox.base_url}/control/orders/{out_trade_no}/approve", params={"mchid": MCHID}
            )
            assert r.status_code == 200, r.text

        async def succeeded() -> bool:
            r = await self.cashier.get(f"/v1/payments/{payment_id}", headers=headers)
            return bool(r.json()["status"] == "succeeded")

        await eventually(succeeded, "the cashier to see the payment paid")
        return payment_id

    async def succeeded_event(self, payment_id: str) -> Envelope:
        engine = create_async_engine(self.cashier_db)
        try:
            async with engine.connect() as conn:
                rows = (
                    (
                        await conn.execute(
                            text("SELECT payload FROM outbox WHERE event_type = 'payment.succeeded' AND key = :k"),
                            {"k": payment_id},
                        )
                    )
                    .scalars()
                    .all()
                )
        finally:
            await engine.dispose()
        [payload] = rows
        return Envelope.from_bytes(bytes(payload))

    async def order_of(self, payment_id: str) -> dict[str, Any]:
        async with self.h.runtime.uow.read() as conn:
            [order] = await orders.of_payment(conn, payment_id)
        return dict(order)

    async def share_until_final(self, payment_id: str) -> dict[str, Any]:
        async def final() -> bool:
            await self.sharing.round()
            return bool((await self.order_of(payment_id))["status"] != "pending")

        await eventually(final, "the channel's final answer")
        return await self.order_of(payment_id)


@pytest.fixture
async def env(
    harness: Harness,
    wechat: tuple[SandboxProcess, dict[str, Any]],
    migrated_database: Any,
    service_processes: Any,
    juhe_infra: Any,
    platform_topics: str,
) -> AsyncIterator[Env]:
    sandbox, keys = wechat
    cashier_db = await migrated_database("cashier")
    port = free_port()
    cashier = service_processes(
        "cashier",
        {
            "database_url": cashier_db,
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "topic_namespace": platform_topics,
            "port": port,
            "public_base_url": f"http://127.0.0.1:{port}",
            "poll_initial_seconds": 0.3,
            "poll_backoff_max_seconds": 0.5,
            "poll_interval_seconds": 0.1,
        },
    )
    # settlement's channel-sharing client points at this cashier; answers are asked again at once
    h = harness
    settings = h.context.settings
    fast = settings.model_copy(update={"cashier_url": cashier.base_url, "profit_sharing_poll_seconds": 0.0})
    old = h.context
    fast_cashier = CashierClient.build(cashier.base_url, timeout_seconds=settings.http_timeout_seconds)
    fast_sharing = dataclasses.replace(old.profit_sharing, cashier=fast_cashier, settings=fast)
    h.runtime.context = dataclasses.replace(old, profit_sharing=fast_sharing)
    merchant_id = f"mch_{uuid.uuid4().hex[:10]}"
    config = {
        "base_url": sandbox.base_url,
        "mchid": MCHID,
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
    async with httpx.AsyncClient(base_url=cashier.base_url, timeout=30) as c:
        assert (await c.put(f"/v1/admin/merchants/{merchant_id}", json={})).status_code == 200
        r = await c.put(f"/v1/admin/merchants/{merchant_id}/channels/wechatpay", json={"priority": 1, "config": config})
        assert r.status_code == 200, r.text
        await configure(h, merchant_id)
        try:
            yield Env(h, c, cashier_db, sandbox, merchant_id)
        finally:
            h.runtime.context = old
            await fast_cashier.aclose()


async def configure(h: Harness, merchant_id: str) -> None:
    teacher_accounts = {"wechatpay": {"type": "MERCHANT_ID", "account": TEACHER_MCHID, "name": "Teacher Li"}}
    for rid, kind, holder, accounts in (
        (merchant_id, "merchant", merchant_id, None),
        ("teacher", "partner", "tch_1", teacher_accounts),
        ("driver", "partner", "drv_1", None),
        ("platform", "platform", "platform", None),
    ):
        body = {"kind": kind, "holder_id": holder, "channel_accounts": accounts}
        r = await h.client.put(f"/v1/settlement/receivers/{rid}", json=body)
        assert r.status_code == 200, r.text
    assert (await h.client.get("/v1/settlement/receivers/teacher")).json()["channel_accounts"] == teacher_accounts
    shares = [
        {"receiver_id": "teacher", "percent_bps": 2500},
        {"receiver_id": "driver", "fixed_minor": 500},
        {"receiver_id": "platform", "fixed_minor": 100},
    ]
    rule = {"shares": shares, "remainder_receiver_id": merchant_id}
    assert (await h.client.put(f"/v1/settlement/merchants/{merchant_id}/split-rule", json=rule)).is_success


async def test_channel_pays_the_partner_and_the_ledger_records_it_once(env: Env) -> None:
    h = env.h
    payment_id = await env.paid(10_000, profit_sharing=True)
    event = await env.succeeded_event(payment_id)
    assert event.data["profit_sharing"] is True
    await h.deliver(event)
    await h.deliver(dataclasses.replace(event, id="evt_again"))
    assert await post_due_splits(h.runtime.uow, h.context.ledger, env.settings) == 1
    order = await env.order_of(payment_id)
    # only the teacher has a WeChat Pay account: the driver and the platform stay with Juhe's settlement
    assert order["status"] == "pending" and [(r["account"], r["amount_minor"]) for r in order["receivers"]] == [
        (TEACHER_MCHID, 2500)
    ]
    await asyncio.gather(*(env.sharing.step(order["order_no"]) for _ in range(3)))  # replicas racing
    done = await env.share_until_final(payment_id)
    assert (done["status"], done["channel_status"]) == ("succeeded", "succeeded"), done
    assert done["channel_order_id"] and done["ledger_transfer_id"]
    # Dr 2201 teacher / Cr 1101 channel_clearing[wechatpay]: the split's credit to the teacher is paid, in the test book
    # (the cashier's payments here are test payments: its sandbox configuration, docs/test-mode.md)
    assert await h.balance("tch_1", "merchant_pending", livemode=False) == 0
    assert await h.balance("drv_1", "merchant_pending", livemode=False) == 500
    assert await h.balance("drv_1", "merchant_pending") == 0  # live money untouched
    # repeats change nothing; one event
    await env.sharing.step(done["order_no"])
    assert (await env.order_of(payment_id))["ledger_transfer_id"] == done["ledger_transfer_id"]
    assert [e["data"]["status"] for e in await h.published("profit_sharing.finished")] == ["succeeded"]
    # the teacher's share is not settled (and paid out) a second time; the driver's is
    record = (await h.client.get(f"/v1/settlement/payments/{payment_id}")).json()
    assert record["profit_sharing"] is True
    [shown] = record["profit_sharing_orders"]
    assert (shown["order_no"], shown["status"]) == (done["order_no"], "succeeded")
    for _ in range(2):
        await run_cycle(h.runtime.uow, h.context.ledger, env.settings, today())
    batches = (await h.client.get("/v1/settlement/batches")).json()["data"]
    assert "tch_1" not in {b["holder_id"] for b in batches}
    h.verify_ledger()


async def test_a_payment_the_channel_will_not_share_fails_the_order(env: Env) -> None:
    """The cashier refuses (the payment was not created for profit sharing): the order fails for good,
    nothing is posted, the teacher keeps its share in Juhe's own settlement."""
    h = env.h
    payment_id = await env.paid(10_000, profit_sharing=False)
    event = await env.succeeded_event(payment_id)
    doctored = dataclasses.replace(event, data={**event.data, "profit_sharing": True})
    await h.deliver(doctored)
    await post_due_splits(h.runtime.uow, h.context.ledger, env.settings)
    done = await env.share_until_final(payment_id)
    assert (done["status"], done["last_error"], done["ledger_transfer_id"]) == (
        "failed",
        "profit_sharing_not_enabled",
        None,
    )
    # 25 % (this merchant pays no platform fee), in the test book like the test payment it comes from
    assert await h.balance("tch_1", "merchant_pending", livemode=False) == 2500
    h.verify_ledger()
