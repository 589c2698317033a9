"""libs/common/tracing.py in isolation: in-memory exporter, real HTTP, PostgreSQL and broker (child process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from libs.common import tracing
from libs.common.db import asyncpg_dsn
from libs.common.kafka import ensure_topics
from libs.common.services import REPO_ROOT
from libs.common.testing.infra import Infra


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
async def spans(juhe_infra: Infra, run_module: Callable[..., Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    topic = f"t{uuid.uuid4().hex[:8]}.payments"
    await ensure_topics(juhe_infra.bootstrap, [topic], partitions=1)
    env = {
        **{k: "" for k in os.environ if k.startswith("OTEL_")},  # this scenario installs its own exporter
        "SCENARIO_DSN": asyncpg_dsn(juhe_infra.server_url),
        "SCENARIO_BOOTSTRAP": juhe_infra.bootstrap,
        "SCENARIO_TOPIC": topic,
    }
    result = await asyncio.to_thread(run_module, "tests.deploy.tracing_scenario", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line.get("result"))
    return [line for line in lines if "span_id" in line], summary


def topic_of(span: dict[str, Any]) -> str:
    return str(span["attributes"].get("messaging.destination.name", ""))


def test_off_by_default_and_on_with_an_otlp_endpoint() -> None:
    assert tracing.tracing_requested({}) is False
    assert tracing.tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) is True
    assert tracing.tracing_requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) is True
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracing.tracing_requested(disabled) is False
    probe = "from libs.common import tracing; print(tracing.setup_tracing('x') is None, tracing.current_traceparent())"
    off = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert off.stdout.split() == ["True", "None"], off.stderr  # nothing installed, no context to propagate


def test_one_request_makes_one_trace_across_http_database_and_broker(
    spans: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    recorded, summary = spans
    # The consumer span made from a bare trace id has a synthetic parent: not part of this request's tree.
    request = [
        s
        for s in recorded
        if s["trace_id"] == summary["request_trace_id"]
        and not (s["kind"] == "CONSUMER" and "juhe.event.id" not in s["attributes"])
    ]
    by_id = {s["span_id"]: s for s in request}
    servers = [s for s in request if s["kind"] == "SERVER"]
    assert {s["attributes"].get("http.route") for s in servers} == {"/v1/payments"}
    assert len(servers) == 2  # edge and core: one trace over the real HTTP hop
    clients = [s for s in request if s["kind"] == "CLIENT"]
    assert any(s["attributes"].get("db.system", "").startswith("postgresql") for s in clients), clients
    assert len([s for s in clients if s["name"] == "POST"]) == 2  # the caller's and the edge's httpx calls
    assert any(s["kind"] == "PRODUCER" and topic_of(s) for s in request), request
    roots = [s for s in request if s["parent_id"] not in by_id]
    assert len(roots) == 1 and roots[0]["kind"] == "CLIENT"  # everything hangs under the caller's request
    assert not [s for s in recorded if s["kind"] == "SERVER" and "livez" in json.dumps(s)]  # probes: no spans


def test_an_event_envelope_carries_the_trace_to_its_consumer(
    spans: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    recorded, summary = spans
    traceparent = summary["traceparent"]
    version, trace_id, parent_span_id, flags = traceparent.split("-")
    assert (version, trace_id) == ("00", summary["request_trace_id"])
    assert int(flags, 16) & 0x01  # sampled (0x02, W3C level 2 "random trace id", may be set too)
    consumer = next(s for s in recorded if s["kind"] == "CONSUMER" and s["attributes"].get("juhe.event.id"))
    assert consumer["trace_id"] == summary["request_trace_id"] == summary["consumer_trace_id"]
    assert consumer["parent_id"] == parent_span_id  # a child of the core's server span that wrote the event
    assert consumer["attributes"]["juhe.event.type"] == "payment.succeeded"
    # An envelope with only Juhe's trace_id (written by a process without tracing) still joins the trace.
    assert summary["legacy_trace_id"] == summary["request_trace_id"]


def test_traceparent_helpers_refuse_malformed_input() -> None:
    assert tracing.traceparent_of(None) is None
    assert tracing.traceparent_of("not-hex") is None
    assert tracing.traceparent_of("0" * 32) is None
    trace_id = uuid.uuid4().hex
    assert tracing.traceparent_of(trace_id) == f"00-{trace_id}-{trace_id[:16]}-01"
    assert tracing.traceparent_context("garbage") is not None  # a fresh root, never an exception
