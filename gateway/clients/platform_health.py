"""Platform health for the operator console: every service's readiness, outbox backlog, dead letters and the
consumer groups' lag, read from what the services already expose.

Why in the gateway: the console reaches the platform only through the gateway, and the gateway is the one part
that knows every service's address. Each service is asked `GET /readyz` and `GET /metrics` (the
`juhe_outbox_unpublished` gauge and the `juhe_inbox_dead_letter_total` counter of libs/common); lag is the
broker's: per consumer group of this platform (its topic namespace), end offset minus committed offset over the
partitions the group has committed. Every probe is bounded by `PROBE_TIMEOUT_SECONDS`; a service or broker that
does not answer is reported as such (`unavailable`, lag `null`), never as healthy and never as a failed request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from libs.common.events import TOPICS
from libs.common.kafka import topic_name

PROBE_TIMEOUT_SECONDS = 3.0
LAG_TIMEOUT_SECONDS = 8.0
GROUPS_MAX = 64
OUTBOX_METRIC = "juhe_outbox_unpublished"
DEAD_LETTER_METRIC = "juhe_inbox_dead_letter"  # a counter: the parser drops `_total` from the family name


@dataclass(frozen=True)
class ServiceHealth:
    service: str
    ready: bool
    checks: dict[str, str]
    outbox_backlog: int | None
    dead_letters: int | None

    def view(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "ready": self.ready,
            "checks": self.checks,
            "outbox_backlog": self.outbox_backlog,
            "dead_letters": self.dead_letters,
        }


def metric_sums(text: str) -> dict[str, int]:
    """The sum over all label sets of the two metrics the page shows (a service with replicas reports its own)."""
    sums: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name in (OUTBOX_METRIC, DEAD_LETTER_METRIC):
            total = sum(s.value for s in family.samples if not s.name.endswith("_created"))
            sums[family.name] = int(total)
    return sums


async def service_health(name: str, client: httpx.AsyncClient) -> ServiceHealth:
    try:
        ready = await client.get("/readyz", timeout=PROBE_TIMEOUT_SECONDS)
        body = ready.json() if ready.headers.get("content-type", "").startswith("application/json") else {}
        checks = {str(k): str(v)[:200] for k, v in dict(body.get("checks") or {}).items()}
        metrics = await client.get("/metrics", timeout=PROBE_TIMEOUT_SECONDS)
        sums = metric_sums(metrics.text) if metrics.status_code == 200 else {}
    except (httpx.HTTPError, ValueError) as exc:
        return ServiceHealth(name, False, {"service": f"unavailable: {type(exc).__name__}"}, None, None)
    return ServiceHealth(
        name, ready.status_code == 200, checks, sums.get(OUTBOX_METRIC, 0), sums.get(DEAD_LETTER_METRIC, 0)
    )


async def consumer_lag(bootstrap: str, namespace: str) -> dict[str, int] | None:
    """Lag per consumer group of this platform (records not yet consumed), or None if the broker cannot say."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
    try:
        async with asyncio.timeout(LAG_TIMEOUT_SECONDS):
            await admin.start()
            await reader.start()
            groups = sorted(g for g, _ in await admin.list_consumer_groups() if g.startswith(namespace))[:GROUPS_MAX]
            topics = await reader.topics()
            tps = [
                TopicPartition(t, p)
                for t in (topic_name(namespace, x) for x in TOPICS)
                if t in topics
                for p in sorted(reader.partitions_for_topic(t) or ())
            ]
            ends = await reader.end_offsets(tps) if tps else {}
            lags = await asyncio.gather(*(_group_lag(bootstrap, g, tps, ends) for g in groups))
            return {g.removeprefix(namespace): lag for g, lag in zip(groups, lags, strict=True)}
    except Exception:  # a broker that cannot answer: the page shows "unknown", the request still succeeds
        return None
    finally:
        await asyncio.gather(admin.close(), reader.stop(), return_exceptions=True)


async def _group_lag(bootstrap: str, group: str, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> int:
    # `committed` through the group's coordinator (the admin API's OffsetFetch is not understood by every broker,
    # the embedded one included); a partition the group never committed counts nothing.
    member = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000),
    )
    try:
        await member.start()
        committed = await asyncio.gather(*(member.committed(tp) for tp in tps))
        return sum(max(ends.get(tp, 0) - c, 0) for tp, c in zip(tps, committed, strict=True) if c is not None and c > 0)
    finally:
        await member.stop()


async def platform_health(clients: dict[str, httpx.AsyncClient], *, bootstrap: str, namespace: str) -> dict[str, Any]:
    services = await asyncio.gather(*(service_health(name, client) for name, client in sorted(clients.items())))
    lag = await consumer_lag(bootstrap, namespace)
    return {
        "services": [s.view() for s in services],
        "all_ready": all(s.ready for s in services),
        "outbox_backlog": sum(s.outbox_backlog or 0 for s in services),
        "dead_letters": sum(s.dead_letters or 0 for s in services),
        "consumer_lag": None if lag is None else [{"group": g, "lag": n} for g, n in sorted(lag.items())],
    }
