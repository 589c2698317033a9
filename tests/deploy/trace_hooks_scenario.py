"""Child process of test_trace_hooks.py: a payment through the real gateway, cashier, routing and ledger apps and
the WeChat Pay sandbox, all served over real HTTP in this one process, tracing on with an in-memory exporter.

Its own process: the tracer provider and the instrumentations are process-global. The demo merchant (the
gateway's seed), its WeChat Pay account at the sandbox and in the cashier (the launcher's seed steps) and a
付款码 route in routing are set up as `make run` does; the merchant then pays with a payer's code, sending
its own W3C `traceparent`. Prints the spans of that trace as JSON lines, then a summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deploy.launcher import seed
from libs.common import tracing
from libs.common.embedded import create_database, database_url, free_port
from libs.common.kafka import ensure_platform_topics
from libs.common.migrations import upgrade
from libs.common.services import REPO_ROOT, SERVICES
from libs.common.testing.infra import TEST_TIMINGS, serve_app
from tests.deploy.test_trace_hooks import is_ledger_posting
from tests.e2e.test_payment_code_gateway import _route_barcode

sys.path.insert(0, str(REPO_ROOT / "sdk" / "python"))
from juhe_sdk import Client

WAIT_SECONDS = 90.0
APPS = ("ledger", "routing", "cashier", "gateway")


async def migrated(server_url: str, service: str) -> str:
    name = f"t_trace_{service}_{uuid.uuid4().hex[:10]}"
    await create_database(server_url, name)
    url = database_url(server_url, name)
    await asyncio.to_thread(upgrade, SERVICES[service].migrations_dir, url)
    print(json.dumps({"database": name}), flush=True)
    return url


def step(what: str) -> None:
    """Progress on stderr: a failure or a timeout of the scenario shows how far it got."""
    print(f"scenario: {what}", file=sys.stderr, flush=True)


def as_line(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x") if span.context else "",
        "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
    }


async def main() -> None:
    server_url, bootstrap = os.environ["SCENARIO_SERVER_URL"], os.environ["SCENARIO_BOOTSTRAP"]
    data_dir = Path(os.environ["SCENARIO_DATA_DIR"])
    namespace = f"t{uuid.uuid4().hex[:10]}."
    exporter = InMemorySpanExporter()
    tracing.setup_tracing("juhe", exporter=exporter)  # one provider: the span's scope tells the services apart
    await ensure_platform_topics(bootstrap, namespace)
    from gateway.flows.seed import seed_demo_async
    from sandboxes.wechatpay.app import create_app as wechatpay_app
    from sandboxes.wechatpay.settings import SandboxSettings

    ports = {name: free_port() for name in [*SERVICES, "wechatpay", "web"]}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    databases = {name: await migrated(server_url, name) for name in APPS}
    step("databases migrated")

    def settings(service: str) -> Any:
        values: dict[str, Any] = {
            "env": "test",
            "port": ports[service],
            "public_base_url": urls["gateway"] if service == "cashier" else urls[service],
            "database_url": databases[service],
            "kafka_bootstrap_servers": bootstrap,
            "topic_namespace": namespace,
            **TEST_TIMINGS,
            **{f"{other}_url": url for other, url in urls.items() if other != service},
        }
        return SERVICES[service].settings_class()(**values)

    apps = {name: importlib.import_module(f"{SERVICES[name].module}.app").create_app(settings(name)) for name in APPS}
    sandbox = wechatpay_app(SandboxSettings(data_dir=data_dir / "sandboxes"))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve_app(sandbox, port=ports["wechatpay"], name="wechatpay sandbox"))
        for name in APPS:
            await stack.enter_async_context(serve_app(apps[name], port=ports[name], name=name))
        step("apps serving")
        demo = await seed_demo_async(databases["gateway"], data_dir / "demo-keys.json")
        channels = await seed._demo_channels(seed.DEMO_MERCHANT_ID, {}, {"wechatpay": urls["wechatpay"]})
        await seed._configure_cashier(urls["cashier"], seed.DEMO_MERCHANT_ID, demo.get("webhook_secret"), channels)
        await asyncio.to_thread(_route_barcode, urls["routing"], seed.DEMO_MERCHANT_ID)
        step("seeded")
        async with httpx.AsyncClient(timeout=30) as client:
            shown = await client.post(f"{urls['wechatpay']}/control/payer-codes", json={})
        shown.raise_for_status()

        trace_id = uuid.uuid4().hex  # the merchant's own trace: the platform continues it
        merchant = Client(urls["gateway"], key_id=demo["key_id"], secret=demo["secret"], timeout_seconds=60)
        body = {
            "merchant_order_no": f"trace-{trace_id[:12]}",
            "amount_minor": 880,
            "currency": "CNY",
            "description": "Parking, gate 3",
            "scene": "payment_code",
            "auth_code": shown.json()["auth_code"],
        }
        headers = {"traceparent": f"00-{trace_id}-{trace_id[:16]}-01"}

        def pay() -> Any:
            # The merchant's client is traced too (httpx is instrumented in this process): its span continues
            # the merchant's trace, so the traceparent the gateway receives names the same trace.
            token = otel_context.attach(tracing.traceparent_context(headers["traceparent"]))
            try:
                return merchant.request_raw("POST", "/v1/payments", json=body, headers=headers)
            finally:
                otel_context.detach(token)

        paid = await asyncio.to_thread(pay)
        step(f"paid: {paid.data.get('status')}")

        def in_trace() -> list[ReadableSpan]:
            finished = exporter.get_finished_spans()
            return [s for s in finished if s.context and format(s.context.trace_id, "032x") == trace_id]

        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            if any(is_ledger_posting(as_line(s)) for s in in_trace()):
                await asyncio.sleep(0.5)  # the consumer's last queries end right after its span
                break
            await asyncio.sleep(0.2)
        spans = in_trace()
    for span in spans:
        print(json.dumps(as_line(span)))
    summary = {
        "result": True,
        "trace_id": trace_id,
        "x_trace_id": paid.headers.get("x-trace-id"),
        "status": paid.data.get("status"),
        "ports": ports,
    }
    print(json.dumps(summary), flush=True)
    tracing.shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(main())
