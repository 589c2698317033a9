"""Kafka producer idempotence and topic replication / min ISR: settings → KafkaOptions → producers and topics.

The embedded Tansu broker refuses aiokafka's idempotent producer (embedded-infra.md §2.2), so the default is
off with replication 1; the production configs (k8s base, compose) turn idempotence on and ask 3/2 (k8s).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from libs.common.db import UnitOfWork, create_engine
from libs.common.inbox import InboxConsumer, Subscription
from libs.common.kafka import EMBEDDED, KafkaOptions, ensure_topics, make_producer, new_topics
from libs.common.outbox import OutboxRelay
from libs.common.services import REPO_ROOT, SERVICES
from libs.common.settings import ServiceSettings
from libs.common.tasks import close_bounded
from libs.common.testing.infra import Infra
from libs.common.web import Runtime, worker_tasks

PROD = KafkaOptions(enable_idempotence=True, replication_factor=3, min_insync_replicas=2)


def test_embedded_defaults_are_off_and_single_replica() -> None:
    settings = ServiceSettings()
    assert KafkaOptions.from_settings(settings) == EMBEDDED == KafkaOptions(False, 1, 1)
    with pytest.raises(ValidationError, match="min_insync_replicas"):
        ServiceSettings(kafka_topic_replication_factor=1, kafka_topic_min_insync_replicas=2)


async def test_settings_reach_the_relay_the_consumer_and_their_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUHE_SERVICE_KAFKA_ENABLE_IDEMPOTENCE", "true")
    monkeypatch.setenv("JUHE_SERVICE_KAFKA_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("JUHE_SERVICE_KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "2")
    settings = ServiceSettings()
    engine = create_engine("postgresql+asyncpg://unused@127.0.0.1:1/x")
    runtime = Runtime(settings=settings, engine=engine, uow=UnitOfWork(engine, source="service"))

    async def handler(tx: Any, envelope: Any) -> None:
        return None

    loops = worker_tasks(runtime, [Subscription("ledger.accounts", handler)], [])
    owners = [getattr(loop, "__self__", None) for loop in loops]
    relay = next(o for o in owners if isinstance(o, OutboxRelay))
    consumer = next(o for o in owners if isinstance(o, InboxConsumer))
    assert runtime.epoch_watcher is not None
    assert relay.kafka_options == consumer.kafka_options == runtime.epoch_watcher.options == PROD
    producer = make_producer(settings.kafka_bootstrap_servers, relay.kafka_options)
    assert producer._txn_manager is not None  # aiokafka's idempotence state: only with enable_idempotence
    assert make_producer(settings.kafka_bootstrap_servers)._txn_manager is None
    await engine.dispose()


def test_topic_requests_carry_replication_and_min_isr() -> None:
    requests = new_topics(["a", "b", "a"], partitions=12, options=PROD)
    assert [(t.name, t.num_partitions, t.replication_factor) for t in requests] == [("a", 12, 3), ("b", 12, 3)]
    assert all(t.topic_configs == {"min.insync.replicas": "2"} for t in requests)


async def test_the_embedded_options_create_topics_on_the_embedded_broker(juhe_infra: Infra) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}.options"
    await ensure_topics(juhe_infra.bootstrap, [topic], partitions=2, options=EMBEDDED)
    await ensure_topics(juhe_infra.bootstrap, [topic], partitions=2, options=EMBEDDED)  # exists: no error
    admin = AIOKafkaAdminClient(bootstrap_servers=juhe_infra.bootstrap)
    await admin.start()
    try:
        assert topic in await admin.list_topics()
    finally:
        await close_bounded(admin.close(), name="test admin")


def config_values(docs: list[dict[str, Any]], key: str) -> dict[str, str]:
    """`{service: value}` of JUHE_<SERVICE>_<key> across the ConfigMaps of a rendered overlay."""
    found = {}
    for doc in docs:
        if doc.get("kind") != "ConfigMap":
            continue
        for name, spec in SERVICES.items():
            value = doc.get("data", {}).get(f"{spec.env_prefix}{key}")
            if value is not None:
                found[name] = value
    return found


def test_production_configs_enable_idempotence_and_replicate(
    prod: list[dict[str, Any]], dev: list[dict[str, Any]]
) -> None:
    deployed = set(config_values(prod, "ENV"))  # every service the manifests run (a new one joins them later)
    assert {"gateway", "cashier", "ledger"} <= deployed
    assert config_values(prod, "KAFKA_ENABLE_IDEMPOTENCE") == dict.fromkeys(deployed, "true")
    assert config_values(prod, "KAFKA_TOPIC_REPLICATION_FACTOR") == dict.fromkeys(deployed, "3")
    assert config_values(prod, "KAFKA_TOPIC_MIN_INSYNC_REPLICAS") == dict.fromkeys(deployed, "2")
    # dev: one real Kafka broker: idempotence stays on, topics single-replica
    assert config_values(dev, "KAFKA_ENABLE_IDEMPOTENCE") == dict.fromkeys(deployed, "true")
    assert config_values(dev, "KAFKA_TOPIC_REPLICATION_FACTOR") == dict.fromkeys(deployed, "1")
    assert config_values(dev, "KAFKA_TOPIC_MIN_INSYNC_REPLICAS") == dict.fromkeys(deployed, "1")
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    for name, spec in SERVICES.items():
        if name not in compose["services"]:
            continue  # not in the compose table yet
        for role in ("api", "worker"):
            env = compose["services"][f"{name}-{role}" if role == "worker" else name]["environment"]
            assert env[f"{spec.env_prefix}KAFKA_ENABLE_IDEMPOTENCE"] == "true", name
            assert env[f"{spec.env_prefix}KAFKA_TOPIC_REPLICATION_FACTOR"] == "1", name  # one broker there
