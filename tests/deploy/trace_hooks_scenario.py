"""Child process of test_trace_hooks.py: the real ledger and settlement apps with tracing on (in-memory exporter).

A request to the ledger carrying a W3C `traceparent` opens an account; the ledger writes `account.opened`
to its outbox, the relay publishes it, settlement's consumer applies it. Prints the spans of that trace as
JSON lines. Its own process: the tracer provider and the instrumentations are process-global.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common import tracing
from libs.common.embedded import create_database, database_url
from libs.common.kafka import ensure_platform_topics
from libs.common.migrations import upgrade
from libs.common.services import SERVICES
from libs.common.testing.infra import run_app_in_process

WAIT_SECONDS = 90.0


async def migrated(server_url: str, service: str) -> str:
    name = f"t_trace_{service}_{uuid.uuid4().hex[:10]}"
    await create_database(server_url, name)
    url = database_url(server_url, name)
    await asyncio.to_thread(upgrade, SERVICES[service].migrations_dir, url)
    print(json.dumps({"database": name}), flush=True)
    return url


async def main() -> None:
    server_url, bootstrap = os.environ["SCENARIO_SERVER_URL"], os.environ["SCENARIO_BOOTSTRAP"]
    namespace = f"t{uuid.uuid4().hex[:10]}."
    exporter = InMemorySpanExporter()
    tracing.setup_tracing("juhe", exporter=exporter)
    await ensure_platform_topics(bootstrap, namespace)
    from services.ledger.app import create_app as ledger_app
    from services.settlement.app import create_app as settlement_app

    def settings(service: str, url: str) -> Any:
        return SERVICES[service].settings_class()(
            env="test", database_url=url, kafka_bootstrap_servers=bootstrap, topic_namespace=namespace
        )

    ledger = ledger_app(settings("ledger", await migrated(server_url, "ledger")))
    settlement = settlement_app(settings("settlement", await migrated(server_url, "settlement")))
    trace_id = uuid.uuid4().hex
    async with run_app_in_process(ledger) as client, run_app_in_process(settlement):
        answer = await client.post(
            "/v1/accounts",
            json={"holder_id": "mch_trace", "currency": "CNY", "kind": "merchant_settlement", "code": "2201"},
            headers={"traceparent": f"00-{trace_id}-{trace_id[:16]}-01"},
        )
        assert answer.status_code == 201, answer.text
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
            if any(s.kind.name == "CONSUMER" and "juhe.event.id" in (s.attributes or {}) for s in spans):
                break
            await asyncio.sleep(0.2)
    for span in spans:
        print(
            json.dumps(
                {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
                }
            )
        )
    print(json.dumps({"result": True, "trace_id": trace_id, "x_trace_id": answer.headers.get("X-Trace-Id")}))
    tracing.shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(main())
