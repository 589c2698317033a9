"""Attempt outcomes arrive as real events on cashier.payments; circuit changes leave on routing.channels."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer

from libs.common.events import Envelope
from libs.common.kafka import make_producer, topic_name
from libs.common.testing.waiting import eventually
from services.routing.tests.integration.conftest import ACTOR, payment, seed


class Cashier:
    """Stands in for the cashier's side of the topic: publishes attempt outcome events."""

    def __init__(self, bootstrap: str, namespace: str) -> None:
        self.producer = make_producer(bootstrap)
        self.topic = topic_name(namespace, "cashier.payments")
        self.sent = 0

    async def outcome(self, route_id: str, event_type: str, outcome: str | None = None, **data: Any) -> None:
        self.sent += 1
        payment_id = data.pop("payment_id", f"pay_{self.sent:05d}")
        body = {"payment_id": payment_id, "route_id": route_id, "latency_ms": 120, **data}
        if outcome is not None:
            body["outcome"] = outcome
        envelope = Envelope(type=event_type, source="cashier", subject=payment_id, data=body)
        await self.producer.send_and_wait(self.topic, envelope.to_bytes(), key=payment_id.encode())


async def health(client: Any, route_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/channel-routes/{route_id}/health")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_circuit_opens_traffic_fails_over_then_half_open_probes_close_it(
    make_app: Any, platform_topics: str, juhe_infra: Any
) -> None:
    client = await make_app(role="all")
    await seed(client)
    # Open for an hour first, so the look while it is open does not race the sweep on a loaded machine; then 1 s.
    settings = {"health": {"open_seconds": 3600, "half_open_probe_ratio": 0.5, "half_open_successes_to_close": 2}}
    assert (await client.put("/v1/routing-settings", json=settings, headers=ACTOR)).status_code == 200
    channels = AIOKafkaConsumer(
        topic_name(platform_topics, "routing.channels"),
        bootstrap_servers=juhe_infra.bootstrap,
        auto_offset_reset="earliest",
    )
    cashier = Cashier(juhe_infra.bootstrap, platform_topics)
    await cashier.producer.start()
    await channels.start()
    try:
        for _ in range(5):
            await cashier.outcome("wx_sp", "payment.attempt_failed", "timeout")

        async def opened() -> Any:
            h = await health(client, "wx_sp")
            return h if h["circuit"]["state"] in ("open", "half_open") and h["timeouts"] == 5 else None

        h = await eventually(opened, "the circuit opened")
        opened_at = datetime.fromisoformat(h["circuit"]["changed_at"])
        during = (
            await client.post(
                "/v1/route/simulate", json=payment(at=(opened_at + timedelta(milliseconds=500)).isoformat())
            )
        ).json()
        assert [c["route_id"] for c in during["candidates"]] == ["wx_lianlian", "wx_direct"]
        assert {s["route_id"]: s["reason"] for s in during["skipped"]}["wx_sp"] == "circuit_open"
        assert (await health(client, "wx_sp"))["circuit"]["state"] == "open"  # not half-opened within the hour
        settings["health"]["open_seconds"] = 1
        assert (await client.put("/v1/routing-settings", json=settings, headers=ACTOR)).status_code == 200

        async def half_open() -> Any:
            return (await health(client, "wx_sp"))["circuit"]["state"] == "half_open"  # recorded by the sweep

        await eventually(half_open, "the circuit half-opened")
        probes: list[str] = []
        for i in range(40):
            d = (await client.post("/v1/route", json=payment(f"pay_probe_{i}"))).json()
            first = d["candidates"][0]
            if first["route_id"] == "wx_sp":
                assert first["placement"] == "probe" and first["circuit_state"] == "half_open"
                probes.append(d["payment_id"])
            else:
                assert d["candidates"][-1]["route_id"] == "wx_sp" and d["candidates"][-1]["placement"] == "last_resort"
        assert 5 <= len(probes) <= 35  # half of 40, by hash

        for index, payment_id in enumerate(probes[:2]):
            await cashier.outcome(
                "wx_sp", "payment.succeeded", payment_id=payment_id, attempt_id=f"att_{index}", amount_minor=10_000
            )

        async def closed() -> Any:
            return (await health(client, "wx_sp"))["circuit"]["state"] == "closed"

        await eventually(closed, "the circuit closed again")
        recovered = (await client.post("/v1/route", json=payment("pay_after"))).json()
        sp = next(c for c in recovered["candidates"] if c["route_id"] == "wx_sp")
        # Back in normal ranking; its success-rate window still remembers the 5 timeouts, so traffic
        # returns gradually as the window forgets them, rather than all at once.
        assert sp["circuit_state"] == "closed" and sp["placement"] == "score"
        assert sp["attempts_in_window"] == 7 and sp["success_rate"] < 0.8

        seen: list[tuple[str, str]] = []

        async def all_circuit_events() -> Any:
            batch = await channels.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    env = Envelope.from_bytes(record.value)
                    if env.type.startswith("route.circuit"):
                        seen.append((env.subject, env.type))
            return len(seen) >= 3

        await eventually(all_circuit_events, "every circuit event published")
        assert seen == [
            ("wx_sp", "route.circuit_opened"),
            ("wx_sp", "route.circuit_half_opened"),
            ("wx_sp", "route.circuit_closed"),
        ]
    finally:
        await channels.stop()
        await cashier.producer.stop()


async def test_succeeded_volume_fills_the_daily_cap_and_attempts_count_once(
    make_app: Any, platform_topics: str, juhe_infra: Any
) -> None:
    client = await make_app(role="all")
    await seed(client)
    route = (await client.get("/v1/channel-routes/wx_sp")).json()
    body = {k: v for k, v in route.items() if k not in ("route_id", "version")}
    body["daily_volume_cap_minor"] = 20_000
    assert (await client.put("/v1/channel-routes/wx_sp", json=body, headers=ACTOR)).status_code == 200
    cashier = Cashier(juhe_infra.bootstrap, platform_topics)
    await cashier.producer.start()
    try:
        await cashier.outcome("wx_sp", "payment.succeeded", amount_minor=15_000, attempt_id="att_a")
        # The same attempt reported twice, by events of one payment (same key, so in order).
        await cashier.outcome(
            "wx_lianlian", "payment.attempt_failed", "declined", attempt_id="att_b", payment_id="pay_b"
        )
        await cashier.outcome("wx_lianlian", "payment.failed", attempt_id="att_b", payment_id="pay_b")
        await cashier.outcome("wx_lianlian", "payment.attempt_failed", "error", attempt_id="att_c", latency_ms=300)
        await cashier.outcome("", "payment.failed")  # no route: ignored

        async def counted() -> Any:
            sp, ll = await health(client, "wx_sp"), await health(client, "wx_lianlian")
            return (sp, ll) if sp["volume_today_minor"] == 15_000 and ll["attempts"] >= 2 else None

        sp, ll = await eventually(counted, "the succeeded volume and attempts counted")
        await asyncio.sleep(0.5)  # let any (wrong) duplicate land before checking the counts
        ll = await health(client, "wx_lianlian")
        assert (ll["attempts"], ll["declined"], ll["errors"], ll["mean_latency_ms"]) == (2, 1, 1, 210.0)
        assert sp["succeeded"] == 1 and sp["circuit"]["state"] == "closed"

        big = (await client.post("/v1/route", json=payment(amount_minor=5_001))).json()
        assert {s["route_id"]: s["reason"] for s in big["skipped"]}["wx_sp"] == "daily_cap_reached"
        fits = (await client.post("/v1/route", json=payment(amount_minor=5_000))).json()
        assert fits["candidates"][0]["route_id"] == "wx_sp"
    finally:
        await cashier.producer.stop()
