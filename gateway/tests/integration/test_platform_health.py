"""Platform health for the operator console (`GET /v1/platform/health`), against real processes: a service that
answers gives its readiness checks and its outbox and dead-letter figures, the ones that do not are reported
unavailable (the request itself succeeds), and the lag of this platform's consumer groups is read from the real
broker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from juhe_sdk import PermissionDeniedError

from gateway.clients.platform_health import DEAD_LETTER_METRIC, OUTBOX_METRIC, metric_sums
from gateway.tests.integration.conftest import StackFactory
from libs.common.kafka import ensure_platform_topics, topic_name

RECORDS = 5
CONSUMED = 2


async def test_health_reports_services_and_consumer_lag(make_stack: StackFactory, juhe_infra: Any) -> None:
    stack = await make_stack()
    namespace = stack.settings.topic_namespace
    await ensure_platform_topics(juhe_infra.bootstrap, namespace)
    topic = topic_name(namespace, "cashier.payments")
    producer = AIOKafkaProducer(bootstrap_servers=juhe_infra.bootstrap)
    await producer.start()
    try:
        for _ in range(RECORDS):
            await producer.send_and_wait(topic, b"{}", key=b"pay_same", partition=0)
    finally:
        await producer.stop()
    group = f"{namespace}juhe-probe-cashier"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=juhe_infra.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        taken = 0
        while taken < CONSUMED:  # bounded by the records there are; getmany waits at most its timeout
            batch = await consumer.getmany(timeout_ms=5_000, max_records=CONSUMED - taken)
            assert batch, "no record arrived"
            for tp, records in batch.items():
                taken += len(records)
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()

    health = await stack.admin().request("GET", "/v1/platform/health")
    services = {s["service"]: s for s in health["services"]}
    # The small upstream answers for the cashier: its figures are read (the same as its own /metrics says:
    # they live in this test process's registry, which earlier tests of the run may have moved); its broker
    # setting is the default address where nothing listens, so its own readiness check says not ready, and the
    # page shows why.
    async with httpx.AsyncClient() as client:
        own = metric_sums((await client.get(f"{stack.upstream_url}/metrics")).text)
    cashier = services["cashier"]
    assert (cashier["outbox_backlog"], cashier["dead_letters"]) == (
        own.get(OUTBOX_METRIC, 0),
        own.get(DEAD_LETTER_METRIC, 0),
    )
    assert cashier["ready"] is False and cashier["checks"]["database"] == "ok"
    assert cashier["checks"]["broker"].startswith("error")
    assert services["ledger"]["ready"] is False and services["ledger"]["outbox_backlog"] is None
    assert health["all_ready"] is False
    assert {"group": "juhe-probe-cashier", "lag": RECORDS - CONSUMED} in health["consumer_lag"]

    with pytest.raises(PermissionDeniedError):
        await stack.merchant().request("GET", "/v1/platform/health")


def test_metric_sums_add_every_label_set() -> None:
    text = (
        "# TYPE juhe_outbox_unpublished gauge\n"
        'juhe_outbox_unpublished{service="cashier"} 3.0\n'
        'juhe_outbox_unpublished{service="cashier-2"} 4.0\n'
        "# TYPE juhe_inbox_dead_letter_total counter\n"
        'juhe_inbox_dead_letter_total{service="cashier"} 2.0\n'
        'juhe_inbox_dead_letter_created{service="cashier"} 1.7e9\n'
    )
    assert metric_sums(text) == {"juhe_outbox_unpublished": 7, "juhe_inbox_dead_letter": 2}
