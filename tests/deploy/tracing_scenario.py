"""Child process of test_tracing.py: libs/common/tracing.py with the in-memory exporter, on real components.

A process of its own because a tracer provider and the library instrumentations are process-global: the
pytest process running the rest of the suite stays untouched. Prints the finished spans as JSON lines.

Scenario: an "edge" FastAPI app, served by uvicorn, calls a "core" app over real HTTP (httpx); the core
queries the real PostgreSQL (asyncpg), publishes a record to the real broker (aiokafka) and writes the
`traceparent` an event envelope would carry; a consumer span then continues that trace.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common import tracing
from libs.common.testing.infra import serve_app


async def main() -> None:
    dsn, bootstrap, topic = os.environ["SCENARIO_DSN"], os.environ["SCENARIO_BOOTSTRAP"], os.environ["SCENARIO_TOPIC"]
    exporter = InMemorySpanExporter()
    assert tracing.setup_tracing("scenario", exporter=exporter) is not None
    envelope: dict[str, Any] = {}

    core = FastAPI()

    @core.post("/v1/payments")
    async def create_payment() -> dict[str, Any]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"payment.succeeded", key=b"pay_1")
        finally:
            await producer.stop()
        envelope.update(type="payment.succeeded", traceparent=tracing.current_traceparent())
        return {"trace_id": tracing.current_trace_id()}

    edge = FastAPI()
    tracing.instrument_app(core)
    tracing.instrument_app(edge)

    async with serve_app(core, name="core") as core_url:

        @edge.post("/v1/payments")
        async def forward() -> dict[str, Any]:
            async with httpx.AsyncClient() as client:
                answer: dict[str, Any] = (await client.post(f"{core_url}/v1/payments")).json()
                return answer

        async with serve_app(edge, name="edge") as edge_url, httpx.AsyncClient() as client:
            seen = (await client.post(f"{edge_url}/v1/payments")).json()
            await client.get(f"{edge_url}/livez")  # excluded: probes make no spans

    with tracing.consumer_span(envelope["type"], topic, envelope["traceparent"], **{"juhe.event.id": "evt_1"}):
        consumer_trace_id = tracing.current_trace_id()
    with tracing.consumer_span("payment.succeeded", topic, tracing.traceparent_of(seen["trace_id"])):
        legacy_trace_id = tracing.current_trace_id()

    for span in exporter.get_finished_spans():
        parent = span.parent
        print(
            json.dumps(
                {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": format(parent.span_id, "016x") if parent else None,
                    "service": span.resource.attributes.get("service.name"),
                    "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
                }
            )
        )
    print(
        json.dumps(
            {
                "result": True,
                "request_trace_id": seen["trace_id"],
                "consumer_trace_id": consumer_trace_id,
                "legacy_trace_id": legacy_trace_id,
                "traceparent": envelope["traceparent"],
            }
        )
    )
    tracing.shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
