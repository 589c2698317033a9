"""Dashboards and autoscaling metrics: well-formed, and wired to the names the alerts and HPAs use."""

from __future__ import annotations

import json
from typing import Any

import yaml

from libs.common.services import REPO_ROOT

OBSERVABILITY = REPO_ROOT / "deploy" / "observability"


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboards_are_well_formed() -> None:
    files = sorted((OBSERVABILITY / "grafana").glob("*.json"))
    assert files
    for path in files:
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in panels(dashboard):
            assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
            for target in panel.get("targets", []):
                expr = target["expr"]
                assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
                used = {v for v in ("$service", "${datasource}") if v in expr}
                assert {u.strip("${}") for u in used} <= variables


def test_dashboard_covers_the_payment_slis() -> None:
    text = (OBSERVABILITY / "grafana" / "juhe-payments.json").read_text()
    for metric in (
        "juhe_inbox_applied_total",  # payment outcomes
        "juhe_http_request_duration_seconds_bucket",  # latency per route
        "juhe_outbox_unpublished",  # outbox backlog
        "kafka_consumergroup_lag",  # consumer lag
        "juhe_inbox_dead_letter_total",  # dead letters
        "juhe_ledger_batch_transfers_bucket",  # ledger batch sizes
    ):
        assert metric in text, metric


def test_adapter_serves_every_external_metric_the_hpas_use() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "prometheus-adapter-rules.yaml").read_text())["rules"]["external"]
    served = {rule["name"]["as"] for rule in rules}
    wanted = set()
    for path in (REPO_ROOT / "deploy" / "k8s" / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "HorizontalPodAutoscaler":
                wanted |= {m["external"]["metric"]["name"] for m in doc["spec"]["metrics"] if m["type"] == "External"}
    assert wanted and wanted <= served


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text()
    sections = {line.removeprefix("### ").strip().lower() for line in runbook.splitlines() if line.startswith("### ")}
    monitoring = (REPO_ROOT / "deploy" / "k8s" / "base" / "monitoring.yaml").read_text()
    rules = [doc for doc in yaml.safe_load_all(monitoring) if doc and doc["kind"] == "PrometheusRule"]
    alerts = [r for rule in rules for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        name = alert["alert"].lower()
        assert name in sections, f"{alert['alert']}: no '### {alert['alert']}' in docs/operations.md"
        assert alert["annotations"]["runbook"] == f"docs/operations.md#{name}"
