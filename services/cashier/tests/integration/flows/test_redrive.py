"""No half-created payment: a cashier killed between committing the attempt and recording the channel's answer.

The cashier runs as a real process (`python -m services.cashier`) and dies at a crash point
(`libs.common.faults`, JUHE_CRASH_AT): `cashier.prepay.before_call` (the channel never heard of the order)
or `cashier.prepay.after_call` (the channel holds the order; we never wrote its answer). It is started
again without the crash point; then the client's retry of the create, or the worker on its own, makes the
payment payable: one attempt, the same out_trade_no, and paid in the sandbox it succeeds once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.common.embedded import free_port
from libs.common.faults import CRASH_EXIT_CODE
from libs.common.outbox_tables import outbox
from libs.common.testing.infra import TEST_TIMINGS, ServiceProcess
from services.cashier.store.tables import attempts, payments

from .conftest import Sandboxes, approve, qr_payment, wait_payment_status

MERCHANT = "mch_redrive"
HEADERS = {"X-Juhe-Merchant-Id": MERCHANT}


@dataclass
class CrashedCashier:
    process: ServiceProcess
    engine: AsyncEngine

    @property
    def base_url(self) -> str:
        return self.process.base_url

    async def restart(self, **env: str) -> None:
        await asyncio.to_thread(self.process.start, extra_env={"JUHE_CRASH_AT": "", **env})

    async def rows(self, merchant_order_no: str) -> tuple[Any, list[Any]]:
        async with self.engine.connect() as conn:
            payment = (
                await conn.execute(
                    select(payments).where(
                        payments.c.merchant_id == MERCHANT, payments.c.merchant_order_no == merchant_order_no
                    )
                )
            ).one()
            tried = (
                await conn.execute(select(attempts).where(attempts.c.payment_id == payment.id).order_by(attempts.c.seq))
            ).all()
        return payment, list(tried)

    async def outbox_count(self, event_type: str, subject: str) -> int:
        query = (
            select(func.count()).select_from(outbox).where(outbox.c.event_type == event_type, outbox.c.key == subject)
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def payment(self, payment_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url, headers=HEADERS, timeout=30) as client:
            response = await client.get(f"/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_status(self, payment_id: str, status: str) -> dict[str, Any]:
        return await wait_payment_status(self.payment, payment_id, status, timeout_seconds=60)


@pytest.fixture
async def crashed_cashier(
    migrated_database: Any,
    service_processes: Any,
    juhe_infra: Any,
    platform_topics: str,
    sandboxes: Sandboxes,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Any]:
    """`await crashed_cashier(channels, crash_at, order_no)`: a cashier process (the channels configured in that
    priority order) that died creating that order."""
    engines: list[AsyncEngine] = []

    async def start(channels: str, crash_at: str, order_no: str, **overrides: Any) -> CrashedCashier:
        database_url = await migrated_database("cashier")
        port = free_port()
        settings = {
            "database_url": database_url,
            "port": port,
            "public_base_url": f"http://127.0.0.1:{port}",
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "topic_namespace": platform_topics,
            **TEST_TIMINGS,
            "poll_initial_seconds": 0.3,
            "poll_backoff_max_seconds": 1.0,
            "poll_interval_seconds": 0.1,
            "redrive_grace_seconds": 3.0,  # its 60 % bounds a prepay: above the sandbox configs' timeouts
            **overrides,
        }
        process = service_processes("cashier", settings, env={"JUHE_CRASH_AT": crash_at})
        engine = create_async_engine(database_url)
        engines.append(engine)
        async with httpx.AsyncClient(base_url=process.base_url, headers=HEADERS, timeout=30) as client:
            merchant = await client.put(f"/v1/admin/merchants/{MERCHANT}", json={})
            assert merchant.status_code == 200, merchant.text
            for priority, channel in enumerate(channels.split(","), start=1):
                config = sandboxes.wechat_config() if channel == "wechatpay" else sandboxes.alipay_config()
                configured = await client.put(
                    f"/v1/admin/merchants/{MERCHANT}/channels/{channel}", json={"priority": priority, "config": config}
                )
                assert configured.status_code == 200, configured.text
            with pytest.raises(httpx.TransportError):  # the process dies mid-request
                await client.post("/v1/payments", json=qr_payment(order_no))
        assert await asyncio.to_thread(process.wait_exit, 60) == CRASH_EXIT_CODE
        return CrashedCashier(process, engine)

    yield start
    for engine in engines:
        await engine.dispose()


async def _retry_create(cashier: CrashedCashier, order_no: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cashier.base_url, headers=HEADERS, timeout=60) as client:
        return await client.post("/v1/payments", json=qr_payment(order_no))


async def _pays_once(cashier: CrashedCashier, sandboxes: Sandboxes, channel: str, payment: dict[str, Any]) -> None:
    await approve(sandboxes, channel, payment["attempts"][0]["out_trade_no"])
    await cashier.wait_status(payment["id"], "succeeded")
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
async def test_retried_create_after_a_crash_before_the_channel_call_is_payable(
    crashed_cashier: Any, sandboxes: Sandboxes, channel: str
) -> None:
    cashier = await crashed_cashier(channel, "cashier.prepay.before_call", f"rd-before-{channel}")
    payment_row, tried = await cashier.rows(f"rd-before-{channel}")
    assert payment_row.status == "created" and [a.status for a in tried] == ["created"]

    # API role only: no worker, so only the client's retry can make it payable.
    await cashier.restart(JUHE_CASHIER_ROLE="api")
    retried = await _retry_create(cashier, f"rd-before-{channel}")
    assert retried.status_code == 200, retried.text
    payment = retried.json()
    assert payment["status"] == "processing" and payment["payer_action"], payment
    assert [(a["id"], a["status"]) for a in payment["attempts"]] == [(tried[0].id, "processing")]
    await _pays_once(cashier, sandboxes, channel, payment)


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
async def test_worker_redrives_after_a_crash_after_the_channel_call(
    crashed_cashier: Any, sandboxes: Sandboxes, channel: str
) -> None:
    """The channel already holds the order: the re-drive's identical prepay gets the same order back."""
    order_no = f"rd-after-{channel}"
    cashier = await crashed_cashier(channel, "cashier.prepay.after_call", order_no)
    payment_row, tried = await cashier.rows(order_no)
    assert payment_row.status == "created" and [a.status for a in tried] == ["created"]

    await cashier.restart()  # nobody retries: the worker re-drives once the attempt's lease has run out
    payment = await cashier.wait_status(payment_row.id, "processing")
    assert payment["payer_action"], payment
    assert [(a["out_trade_no"], a["status"]) for a in payment["attempts"]] == [(tried[0].out_trade_no, "processing")]
    await _pays_once(cashier, sandboxes, channel, payment)


async def test_concurrent_retries_and_the_worker_make_one_attempt_and_one_order(
    crashed_cashier: Any, sandboxes: Sandboxes
) -> None:
    cashier = await crashed_cashier("wechatpay", "cashier.prepay.after_call", "rd-race")
    _, tried = await cashier.rows("rd-race")
    await cashier.restart()  # the worker runs too
    answers = await asyncio.gather(*(_retry_create(cashier, "rd-race") for _ in range(4)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    actions = [a.json()["payer_action"] for a in answers]
    assert actions[0] and all(action == actions[0] for action in actions), actions
    _, after = await cashier.rows("rd-race")
    assert [(a.id, a.status) for a in after] == [(tried[0].id, "processing")]
    await _pays_once(cashier, sandboxes, "wechatpay", answers[0].json())


async def test_an_order_paid_before_the_redrive_is_applied_as_a_success_once(
    crashed_cashier: Any, sandboxes: Sandboxes
) -> None:
    """The payer paid the order the crashed prepay created: the re-drive's prepay answers ORDERPAID, the cashier
    asks the channel and records the success (the channel's own notification may win; once either way)."""
    cashier = await crashed_cashier("wechatpay", "cashier.prepay.after_call", "rd-paid")
    payment_row, tried = await cashier.rows("rd-paid")
    await approve(sandboxes, "wechatpay", tried[0].out_trade_no)
    await cashier.restart()
    await cashier.wait_status(payment_row.id, "succeeded")
    assert await cashier.outbox_count("payment.succeeded", payment_row.id) == 1
    _, after = await cashier.rows("rd-paid")
    assert [(a.id, a.status) for a in after] == [(tried[0].id, "succeeded")]


async def test_redrive_fails_over_when_the_first_channel_is_down(
    crashed_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    """The candidates stored at creation let a re-drive fail over exactly as the create flow would have."""
    cashier = await crashed_cashier("wechatpay,alipay", "cashier.prepay.before_call", "rd-failover")
    async with httpx.AsyncClient() as client:
        dark = await client.put(sandboxes.wechat.base_url + "/control/faults", json={"dark": True})
        assert dark.status_code == 200
    await cashier.restart(JUHE_CASHIER_ROLE="api")
    retried = await _retry_create(cashier, "rd-failover")
    assert retried.status_code == 200, retried.text
    payment = retried.json()
    assert payment["status"] == "processing" and payment["channel"] == "alipay", payment
    assert [(a["channel"], a["status"]) for a in payment["attempts"]] == [
        ("wechatpay", "failed"),
        ("alipay", "processing"),
    ]
    assert await cashier.outbox_count("payment.attempt_failed", payment["id"]) == 1
    await approve(sandboxes, "alipay", payment["attempts"][1]["out_trade_no"])
    await cashier.wait_status(payment["id"], "succeeded")
    assert await cashier.outbox_count("payment.succeeded", payment["id"]) == 1


async def test_a_retry_while_the_lease_is_held_is_503_retryable_and_changes_nothing(
    crashed_cashier: Any, sandboxes: Sandboxes
) -> None:
    """Within the attempt's lease its driver may still be alive: the retry waits (bounded), then says retry."""
    cashier = await crashed_cashier("wechatpay", "cashier.prepay.before_call", "rd-held", redrive_grace_seconds=600)
    await cashier.restart(JUHE_CASHIER_ROLE="api", JUHE_CASHIER_REDRIVE_WAIT_SECONDS="0.5")
    retried = await _retry_create(cashier, "rd-held")
    assert retried.status_code == 503, retried.text
    assert retried.json()["code"] == "channel_unavailable" and retried.json()["retryable"] is True
    payment_row, tried = await cashier.rows("rd-held")
    assert retried.json()["payment_id"] == payment_row.id
    assert payment_row.status == "created" and [a.status for a in tried] == ["created"]
