"""One payment is one trace: gateway → cashier → routing → channel → event → ledger (in-memory exporter).

The scenario (tests/deploy/trace_hooks_scenario.py, a child process: the tracer provider is process-global)
serves the real gateway, cashier, routing and ledger apps and the WeChat Pay sandbox over real HTTP with
tracing on, seeds the demo merchant as `make run` does, and pays with a 付款码 (payment code), which is
charged during the create call: the cashier writes `payment.succeeded` in the request's own transaction, the
event carries the request's W3C `traceparent`, and the ledger's consumer continues it. With tracing off (the
default) nothing is instrumented and events carry no `traceparent`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common import tracing
from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.settings import ServiceSettings
from libs.common.testing.infra import Infra
from libs.common.web import create_service_app


def is_ledger_posting(span: dict[str, Any]) -> bool:
    """The ledger's consumer applying `payment.succeeded` (its group: `juhe-ledger-cashier`)."""
    attributes = span["attributes"]
    return bool(
        span["kind"] == "CONSUMER"
        and attributes.get("juhe.event.type") == "payment.succeeded"
        and attributes.get("messaging.consumer.group.name", "").startswith("juhe-ledger")
    )


def mentions(span: dict[str, Any], port: int) -> bool:
    """The span names `port` (a server span's own port, a client span's URL)."""
    return any(value == str(port) or f":{port}" in value for value in span["attributes"].values())


async def test_one_payment_is_one_trace_from_the_gateway_to_the_ledger(
    juhe_infra: Infra, run_module: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    env = {
        "SCENARIO_SERVER_URL": juhe_infra.server_url,
        "SCENARIO_BOOTSTRAP": juhe_infra.bootstrap,
        "SCENARIO_DATA_DIR": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",  # the scenario installs the in-memory exporter itself
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
    }
    # A bound, not a wait: four services and a sandbox start in one process, slowly on a loaded 2-core box.
    result = await asyncio.to_thread(run_module, "tests.deploy.trace_hooks_scenario", env=env, timeout=600)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    juhe_infra.created_databases.extend(line["database"] for line in lines if "database" in line)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = next(line for line in lines if line.get("result"))
    spans: list[dict[str, Any]] = [line for line in lines if "kind" in line]
    ports = summary["ports"]
    assert summary["status"] == "succeeded"
    assert summary["x_trace_id"] == summary["trace_id"]  # logs, X-Trace-Id and the trace share one id
    assert spans and {s["trace_id"] for s in spans} == {summary["trace_id"]}
    hops = {
        "gateway": any(s["kind"] == "SERVER" and mentions(s, ports["gateway"]) for s in spans),
        "gateway → cashier": any(s["kind"] == "CLIENT" and s["name"] == "POST cashier" for s in spans),
        "cashier": any(s["kind"] == "SERVER" and mentions(s, ports["cashier"]) for s in spans),
        "routing": any(s["kind"] == "SERVER" and mentions(s, ports["routing"]) for s in spans),
        "channel": any(s["kind"] == "CLIENT" and mentions(s, ports["wechatpay"]) for s in spans),
        "database": any("db.system" in s["attributes"] or "db.system.name" in s["attributes"] for s in spans),
        "event → ledger": any(is_ledger_posting(s) for s in spans),
    }
    assert all(hops.values()), (hops, [(s["kind"], s["name"], s["attributes"]) for s in spans][:80])


async def test_tracing_off_instruments_nothing_and_events_carry_no_traceparent() -> None:
    """This process has no OTLP endpoint: the hooks stay out of the way (no span is ever made)."""
    assert not tracing.tracing_requested() and not tracing.enabled()
    app = create_service_app(ServiceSettings(env="test"), title="probe")
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    tx = Tx(conn=AsyncConnection.__new__(AsyncConnection), source="probe")  # publish only queues the event
    envelope = tx.publish(topic="ledger.accounts", type="account.opened", subject="acc_1", data={})
    assert envelope.traceparent is None and tracing.current_trace_id() is None
    assert b"traceparent" not in envelope.to_bytes()
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
