"""The real process on the real broker: marketing (worker role) consumes a cashier `payment.succeeded` from
`cashier.payments` into points, and its relay publishes the outbox to `marketing.points` and
`marketing.coupons`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.kafka import topic_name
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from libs.common.testing.infra import TEST_TIMINGS
from services.marketing.store.tables import points_earnings
from services.marketing.tests.integration.test_points import payment

WAIT_SECONDS_MAX = 60.0


def _as(*, platform: str, user: str | None = None) -> dict[str, str]:
    token = mint_identity_token(DEMO_INTERNAL_TOKEN_SECRET, key_id="t", ttl_seconds=600, platform=platform, user=user)
    return {IDENTITY_HEADER: token}


async def _published(bootstrap: str, topic: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first record on `topic` that `wanted` accepts, waiting (bounded) for the relay to publish it."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = json.loads(record.value or b"{}")
                    if wanted(envelope):
                        return dict(envelope)
        raise AssertionError(f"nothing wanted on {topic}")
    finally:
        await consumer.stop()


async def test_points_from_a_real_payment_event_and_events_relayed(
    juhe_infra: Any,
    migrated_database: Callable[..., Any],
    service_processes: Callable[..., Any],
    topic_namespace: str,
) -> None:
    database_url = await migrated_database("marketing")
    marketing = service_processes(
        "marketing",
        {
            "database_url": database_url,
            "kafka_bootstrap_servers": juhe_infra.bootstrap,
            "topic_namespace": topic_namespace,
            "role": "all",
            **TEST_TIMINGS,
        },
    )
    async with httpx.AsyncClient(base_url=marketing.base_url, timeout=30) as client:
        rule = await client.post("/v1/marketing/points-rules", json={"name": "1 per yuan"}, headers=_as(platform="p"))
        assert rule.status_code == 201, rule.text
        campaign = (await client.post("/v1/marketing/campaigns", json={"name": "c"}, headers=_as(platform="p"))).json()
        stock = (
            await client.post(
                "/v1/marketing/stocks",
                headers=_as(platform="p"),
                json={
                    "campaign_id": campaign["campaign_id"],
                    "name": "s",
                    "discount_kind": "fixed",
                    "amount_off_minor": 100,
                    "valid_days_after_claim": 1,
                    "funding_party": "platform",
                    "budget_count": 1,
                },
            )
        ).json()
        await client.post(f"/v1/marketing/stocks/{stock['stock_id']}/start", headers=_as(platform="p"))
        claimed = await client.post(
            "/v1/marketing/me/claims",
            json={"stock_id": stock["stock_id"], "request_id": "r"},
            headers=_as(user="usr_1", platform="p"),
        )
        assert claimed.status_code == 201, claimed.text
    producer = AIOKafkaProducer(bootstrap_servers=juhe_infra.bootstrap)
    await producer.start()
    try:
        event = payment("pay_broker", 25_000)
        await producer.send_and_wait(
            topic_name(topic_namespace, "cashier.payments"), event.to_bytes(), key=b"pay_broker"
        )
    finally:
        await producer.stop()
    engine = create_async_engine(database_url)
    try:
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
        earned = None
        while earned is None and asyncio.get_running_loop().time() < deadline:
            async with engine.connect() as conn:
                earned = (
                    await conn.execute(
                        select(points_earnings.c.points).where(points_earnings.c.payment_id == "pay_broker")
                    )
                ).scalar_one_or_none()
            await asyncio.sleep(0.1)
        assert earned == 250
    finally:
        await engine.dispose()
    relayed = await _published(
        juhe_infra.bootstrap,
        topic_name(topic_namespace, "marketing.points"),
        lambda e: e.get("type") == "points.earned",
    )
    assert relayed["data"]["points"] == 250 and relayed["subject"] == "pay_broker"
    coupon = await _published(
        juhe_infra.bootstrap,
        topic_name(topic_namespace, "marketing.coupons"),
        lambda e: e.get("type") == "coupon.claimed",
    )
    assert coupon["data"]["user_id"] == "usr_1"
