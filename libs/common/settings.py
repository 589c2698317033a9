"""Settings every service shares. Built once at start-up and passed down; never read from os.environ later.

Each service subclasses `ServiceSettings` with `model_config = service_settings_config("ledger")`, so
its variables are `JUHE_LEDGER_DATABASE_URL`, `JUHE_LEDGER_PORT`, … . Production refuses to start with
the demo secrets a fresh checkout ships with.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_INTERNAL_TOKEN_SECRET = "juhe-demo-internal-token-secret-change-me"


def service_settings_config(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=f"JUHE_{service.upper()}_", extra="ignore")


class ServiceSettings(BaseSettings):
    model_config = service_settings_config("service")

    service_name: str = "service"
    env: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = 8000
    # What this process runs: the HTTP API, the worker (outbox relay + consumers), or both.
    role: Literal["api", "worker", "all"] = "all"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/juhe"
    database_pool_size: int = Field(default=5, ge=1, le=50)
    # Connections opened beyond pool_size are kept once opened (libs/common/db.py: a new backend costs ~7 ms of CPU).
    database_pool_overflow: int = Field(default=5, ge=0, le=50)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Idempotent producers: on for real Kafka (the production configs), off for the embedded Tansu broker,
    # which refuses aiokafka's InitProducerId (docs/embedded-infra.md §2.2: producer.start() fails).
    kafka_enable_idempotence: bool = False
    # Topics created by ensure_platform_topics: 1/1 on the single embedded broker, 3/2 on a production cluster.
    kafka_topic_replication_factor: int = Field(default=1, ge=1, le=7)
    kafka_topic_min_insync_replicas: int = Field(default=1, ge=1, le=7)
    # Prefix for every topic and consumer group: lets tests share one broker without crosstalk.
    topic_namespace: str = ""
    internal_token_secret: SecretStr = SecretStr(DEMO_INTERNAL_TOKEN_SECRET)
    log_level: str = "INFO"
    log_json: bool = True

    # The largest `limit` a list endpoint accepts (libs.common.paging; more is 422 validation_failed).
    page_size_max: int = Field(default=200, ge=1, le=1000)

    # Consumers (docs/embedded-infra.md §2.3: Tansu holds JoinGroup for session_timeout/2).
    consumer_session_timeout_ms: int = Field(default=6000, ge=1000, le=60000)
    # A third of the session (Kafka's own advice): a member still learns of a rebalance within 2 s, and the
    # platform's consumers send half the idle heartbeats of 1000 ms (docs/performance.md, "Idle").
    consumer_heartbeat_interval_ms: int = Field(default=2000, ge=100, le=20000)
    consumer_batch_max: int = Field(default=200, ge=1, le=5000)
    consumer_handler_attempts_max: int = Field(default=5, ge=1, le=100)
    # How long the broker may hold a fetch with nothing to return. Kafka answers as soon as a record arrives;
    # the embedded Tansu answers only when this runs out, so here it is also the wait of every event hop
    # (cashier → ledger, settlement, marketing). Lower: shorter hops, more idle fetches (docs/performance.md).
    consumer_fetch_max_wait_ms: int = Field(default=500, ge=10, le=10_000)

    # Outbox relay. The shard count is not a setting on purpose: it is `OUTBOX_SHARD_COUNT` (16) in
    # libs/common/outbox_tables.py. Each row stores its shard (crc32(key) % count) when written and a relay
    # publishes shard by shard in order; with another count the next event of an aggregate could land in
    # another shard than its predecessor still waiting, and two relays would publish them in either order.
    # Changing it needs a drained outbox (no unpublished rows) and every writer and relay restarted at once.
    outbox_batch_max: int = Field(default=500, ge=1, le=10000)
    outbox_poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    outbox_retention_hours: float = Field(default=72.0, ge=0, le=24 * 90)
    broker_epoch_check_interval_seconds: float = Field(default=2.0, gt=0, le=300)

    @model_validator(mode="after")
    def _min_isr_within_replicas(self) -> Self:
        if self.kafka_topic_min_insync_replicas > self.kafka_topic_replication_factor:
            raise ValueError("kafka_topic_min_insync_replicas exceeds kafka_topic_replication_factor")
        return self

    @model_validator(mode="after")
    def _refuse_demo_secrets_in_production(self) -> Self:
        if self.env == "prod" and self.internal_token_secret.get_secret_value() == DEMO_INTERNAL_TOKEN_SECRET:
            raise ValueError("refusing to start in prod with the demo internal_token_secret")
        return self
