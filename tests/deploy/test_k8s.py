"""The Kubernetes manifests: every overlay renders, validates against the Kubernetes and the operators' CRD
schemas, and obeys the platform's rules (probes, limits, non-root, network isolation, no secret values).

Rendering uses `kubectl kustomize`; nothing talks to a cluster.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.config import DEMO_CREDENTIALS_KEY, DEMO_IDENTITY_SECRET
from libs.common.events import TOPICS
from libs.common.kafka import EPOCH_TOPIC
from libs.common.services import FRONTENDS, REPO_ROOT, SERVICES

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the oldest release we support (lifecycle.preStop.sleep needs ≥ 1.29)
SCHEMAS = K8S / "schemas"
Doc = dict[str, Any]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d, d["spec"]["template"]["spec"]


# ---------------------------------------------------------------------------------------------- rendering


def test_generated_manifests_are_up_to_date(run_module: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run_module("deploy.k8s.generate", "--check")
    assert result.returncode == 0, f"run `python -m deploy.k8s.generate`:\n{result.stdout}{result.stderr}"


def test_every_overlay_renders_each_object_once(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    ids = [(d["apiVersion"], d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(ids) == len(set(ids))
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"juhe" if name == "prod" else "juhe-dev"}


# ---------------------------------------------------------------------------------------------- schemas


@cache
def crd_schema(api_version: str, kind: str) -> Doc | None:
    group, _, version = api_version.rpartition("/")
    path = SCHEMAS / group / f"{kind}_{version}.json"
    return json.loads(path.read_text()) if path.exists() else None


def unknown_fields(value: Any, schema: Doc, path: str = "") -> Iterator[str]:
    """What the API server's strict field validation rejects: fields a structural schema does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                yield from unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None and key not in ("apiVersion", "kind", "metadata"):
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{i}]")


def test_every_object_validates_against_its_schema(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    failures: list[str] = []
    for doc in docs:
        ref = f"{doc['kind']}/{doc['metadata']['name']}"
        schema = crd_schema(doc["apiVersion"], doc["kind"])
        if schema is not None:
            validator = jsonschema.Draft7Validator(schema)
            failures += [f"{ref}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
            failures += [f"{ref}: unknown field {f}" for f in unknown_fields(doc, schema)]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{ref}: no schema (vendor the CRD under deploy/k8s/schemas)")
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{ref}: {error}")
    assert not failures, "\n".join(failures)


def test_crd_check_catches_a_misspelt_field() -> None:
    """The vendored schemas are not a rubber stamp: a typo in a CR is reported."""
    schema = crd_schema("postgresql.cnpg.io/v1", "Cluster")
    assert schema is not None
    doc = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {}, "spec": {"instance": 3}}
    assert list(unknown_fields(doc, schema)) == [".spec.instance"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors({**doc, "spec": {"instances": "3"}}))


# ---------------------------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_container_is_probed_bounded_and_unprivileged(overlay: tuple[str, list[Doc]], kind: str) -> None:
    _, docs = overlay
    problems: list[str] = []
    for doc, spec in pod_specs(of_kind(docs, kind)):
        ref = f"{kind}/{doc['metadata']['name']}"
        pod_security = spec.get("securityContext", {})
        if not (pod_security.get("runAsNonRoot") and pod_security.get("runAsUser", 0) > 0):
            problems.append(f"{ref}: pod may run as root")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{ref}: no RuntimeDefault seccomp profile")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{ref}: mounts a service account token")
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{ref}/{c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation allowed")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not dropped")
            limits, requests = c.get("resources", {}).get("limits", {}), c.get("resources", {}).get("requests", {})
            if not ({"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys()):
                problems.append(f"{where}: requests and limits for cpu and memory required")
        if kind == "Deployment":
            for c in spec["containers"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{ref}/{c['name']}: no {probe}")
    assert not problems, "\n".join(problems)


def setting_default(service: str, field: str) -> Any:
    return SERVICES[service].settings_class().model_fields[field].default


def test_termination_grace_outlasts_the_longest_request_and_drain(prod: list[Doc]) -> None:
    longest = max(
        setting_default("gateway", "upstream_timeout_seconds"),
        setting_default("cashier", "webhook_timeout_seconds"),
        setting_default("settlement", "http_timeout_seconds"),
        setting_default("ledger", "write_lock_timeout_seconds"),
    )
    source = (REPO_ROOT / "libs/common/runner.py").read_text()
    match = re.search(r"timeout_graceful_shutdown=(\d+)", source)
    assert match, "libs/common/runner.py no longer states uvicorn's drain time"
    drain = float(match.group(1))
    for doc in of_kind(prod, "Deployment"):
        spec = doc["spec"]["template"]["spec"]
        pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > pre_stop + drain + longest, doc["metadata"]["name"]


def test_each_service_runs_an_api_and_a_worker_with_their_role(prod: list[Doc]) -> None:
    for name, spec in SERVICES.items():
        for deployment, role in ((f"juhe-{name}", "api"), (f"juhe-{name}-worker", "worker")):
            container = named(prod, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
            assert container["command"] == ["python", "-m", spec.module]
            env = {e["name"]: e for e in container["env"]}
            assert env[f"{spec.env_prefix}ROLE"]["value"] == role
            assert container["ports"][0]["containerPort"] == spec.default_port


def test_every_deployment_has_a_pdb_and_an_hpa(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    pdbs = {tuple(sorted(p["spec"]["selector"]["matchLabels"].items())) for p in of_kind(docs, "PodDisruptionBudget")}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    for doc in of_kind(docs, "Deployment"):
        if doc["metadata"]["name"].startswith("juhe-sandbox-"):
            continue
        assert tuple(sorted(doc["spec"]["selector"]["matchLabels"].items())) in pdbs, doc["metadata"]["name"]
        hpa = hpas[doc["metadata"]["name"]]
        assert hpa["spec"]["minReplicas"] <= doc["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]


def test_workers_scale_on_consumer_lag_no_further_than_the_partitions(prod: list[Doc]) -> None:
    partitions = min(t["spec"]["partitions"] for t in of_kind(prod, "KafkaTopic") if t["spec"]["partitions"] > 1)
    for name in SERVICES:
        hpa = named(prod, "HorizontalPodAutoscaler", f"juhe-{name}-worker")
        assert hpa["spec"]["maxReplicas"] <= partitions
        external = {m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "External"}
        assert "Resource" in {m["type"] for m in hpa["spec"]["metrics"]}  # CPU
        assert "juhe_outbox_unpublished" in external
        if name not in ("gateway", "migration"):  # these consume nothing (no inbox subscriptions)
            assert "kafka_consumergroup_lag" in external


def test_every_setting_named_in_the_manifests_exists_in_the_service(overlay: tuple[str, list[Doc]]) -> None:
    """A misspelt JUHE_CASHIER_* variable would be silently ignored by pydantic-settings: refuse it here."""
    _, docs = overlay
    names: set[str] = set()
    for cm in of_kind(docs, "ConfigMap"):
        names |= set(cm.get("data", {}))
    for _, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            names |= {e["name"] for e in c.get("env", [])}
    unknown = []
    for var in sorted(names):
        for service in [*SERVICES.values(), *FRONTENDS.values()]:
            if var.startswith(service.env_prefix):
                field = var.removeprefix(service.env_prefix).lower()
                if field not in service.settings_class().model_fields:
                    unknown.append(var)
    assert not unknown


def test_secrets_are_referenced_never_committed(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    assert [s for s in of_kind(docs, "Secret") if s.get("data") or s.get("stringData")] == []
    for cm in of_kind(docs, "ConfigMap"):
        for key in cm.get("data", {}):
            assert not re.search(r"SECRET|PASSWORD|_KEY$|TOKEN", key), f"{key} in ConfigMap {cm['metadata']['name']}"
    for doc, spec in pod_specs(docs):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for e in c.get("env", []):
                if re.search(r"SECRET|PASSWORD|_KEY$|TOKEN", e["name"]):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and not ref.get("optional"), f"{doc['metadata']['name']}: {e['name']}"


def test_migrations_run_before_the_pods_start(prod: list[Doc]) -> None:
    for name in SERVICES:
        job = named(prod, "Job", f"juhe-{name}-migrate")
        assert job["spec"]["parallelism"] == 1
        assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
            "python",
            "-m",
            "deploy.migrate",
            name,
        ]
        for deployment in (f"juhe-{name}", f"juhe-{name}-worker"):
            init = named(prod, "Deployment", deployment)["spec"]["template"]["spec"]["initContainers"]
            assert init[0]["command"][:4] == ["python", "-m", "deploy.migrate", "--wait"]
            assert init[0]["command"][-1] == name


# ---------------------------------------------------------------------------------------------- network


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def peer_matches(peer: Doc, pod: Pod, policy_namespace: str) -> bool:
    namespace, labels = pod
    if "ipBlock" in peer:
        return False
    ns_ok = (
        selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
        if "namespaceSelector" in peer
        else namespace == policy_namespace
    )
    return ns_ok and selects(peer.get("podSelector", {}), labels)


def rule_allows(rule: Doc, peers_key: str, pod: Pod, port: int, policy_namespace: str) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port for p in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(peer_matches(p, pod, policy_namespace) for p in peers)


def allowed(policies: list[Doc], src: Pod, dst: Pod, port: int) -> bool:
    """Kubernetes semantics: the source's egress and the destination's ingress must both allow the flow."""

    def direction(target: Pod, other: Pod, kind: str, rules_key: str, peers_key: str) -> bool:
        applying = [
            p
            for p in policies
            if p["metadata"]["namespace"] == target[0]
            and kind in p["spec"].get("policyTypes", [])
            and selects(p["spec"]["podSelector"], target[1])
        ]
        if not applying:
            return True
        return any(
            rule_allows(rule, peers_key, other, port, p["metadata"]["namespace"])
            for p in applying
            for rule in p["spec"].get(rules_key, [])
        )

    egress_ok = src[0] != dst[0] or direction(src, dst, "Egress", "egress", "to")
    return egress_ok and direction(dst, src, "Ingress", "ingress", "from")


def pods(docs: list[Doc]) -> dict[str, Pod]:
    return {
        d["metadata"]["name"]: (d["metadata"]["namespace"], d["spec"]["template"]["metadata"]["labels"])
        for d in of_kind(docs, "Deployment")
    }


def test_every_service_is_covered_by_a_network_policy(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    policies = of_kind(docs, "NetworkPolicy")
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert default_deny, "no default-deny policy for the namespace"
    for svc in of_kind(docs, "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", "only the Ingress is public"
        selector = svc["spec"]["selector"]
        own = [p for p in policies if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], selector)]
        assert any("Ingress" in p["spec"]["policyTypes"] and p["spec"].get("ingress") for p in own), svc["metadata"]


def test_only_the_gateway_is_reachable_from_outside(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    policies, all_pods = of_kind(docs, "NetworkPolicy"), pods(docs)
    ingress_controller: Pod = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    for name, pod in all_pods.items():
        reachable = allowed(policies, ingress_controller, pod, pod_port(docs, name))
        assert reachable == (name == "juhe-gateway"), name
    backends = {
        path["backend"]["service"]["name"]
        for ing in of_kind(docs, "Ingress")
        for rule in ing["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"juhe-gateway"}


# Calls no ConfigMap names: the channel sandboxes' URLs are per merchant (the cashier's merchant channel
# configuration), and every sandbox notifies the public origin, i.e. the gateway.
SANDBOX_CALLS = {
    ("juhe-cashier", "juhe-sandbox-wechatpay"),
    ("juhe-cashier", "juhe-sandbox-alipay"),
    ("juhe-cashier", "juhe-sandbox-unionpay"),
    ("juhe-cashier", "juhe-sandbox-ecny"),
    *((f"juhe-sandbox-{s}", "juhe-gateway") for s in ("wechatpay", "alipay", "unionpay", "ecny", "bank", "identity")),
}


def calls(docs: list[Doc]) -> set[tuple[str, str]]:
    """Who calls whom, read from the services' configured URLs (http://juhe-<callee>:<port>). A public base
    URL is where others reach this service, not a call it makes."""
    edges = set()
    for cm in of_kind(docs, "ConfigMap"):
        caller = cm["metadata"]["labels"]["app.kubernetes.io/name"]
        for key, value in cm.get("data", {}).items():
            if key.endswith("PUBLIC_BASE_URL"):
                continue
            for callee in re.findall(r"http://(juhe-[a-z-]+):\d+", value):
                edges.add((caller, callee))
    if any(d["metadata"]["name"].startswith("juhe-sandbox-") for d in of_kind(docs, "Deployment")):
        edges |= SANDBOX_CALLS
    return edges


def test_each_service_is_reachable_only_from_its_callers(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    policies, all_pods = of_kind(docs, "NetworkPolicy"), pods(docs)
    edges = calls(docs)
    assert ("juhe-gateway", "juhe-cashier") in edges and ("juhe-cashier", "juhe-routing") in edges
    for src_name, src in all_pods.items():
        for dst_name, dst in all_pods.items():
            if src_name == dst_name:
                continue
            port = named(docs, "Deployment", dst_name)["spec"]["template"]["spec"]["containers"][0]["ports"][0]
            src_service = src[1]["app.kubernetes.io/name"]
            dst_is_api = dst[1]["app.kubernetes.io/component"] == "api"
            expected = dst_is_api and (src_service, dst[1]["app.kubernetes.io/name"]) in edges
            if src_service == dst[1]["app.kubernetes.io/name"]:
                continue  # a service's own api ↔ worker: not needed, not asserted
            assert allowed(policies, src, dst, port["containerPort"]) == expected, f"{src_name} → {dst_name}"


def test_services_reach_postgres_and_kafka_and_prometheus_reaches_them(prod: list[Doc]) -> None:
    policies = of_kind(prod, "NetworkPolicy")
    postgres: Pod = ("juhe", {"cnpg.io/cluster": "juhe-pg", "cnpg.io/instanceRole": "primary"})
    prometheus: Pod = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    for name, pod in pods(prod).items():
        # The web pages have no database: they reach nothing but the gateway.
        assert allowed(policies, pod, postgres, 5432) == (name.removeprefix("juhe-") not in FRONTENDS), name
        port = pod_port(prod, name)
        assert allowed(policies, prometheus, pod, port), name


def pod_port(docs: list[Doc], deployment: str) -> int:
    port: int = named(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ]
    return port


# ---------------------------------------------------------------------------------------------- data


def test_every_topic_is_declared_replicated_three_times_min_isr_two(prod: list[Doc]) -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(prod, "KafkaTopic")}
    assert set(topics) == {*TOPICS, EPOCH_TOPIC}
    for name, spec in topics.items():
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2, name
        assert spec["config"]["retention.ms"] > 0 or name == EPOCH_TOPIC
    assert topics[EPOCH_TOPIC]["config"]["retention.ms"] == -1  # record 0 is the epoch: never expire it
    kafka = named(prod, "Kafka", "juhe")["spec"]["kafka"]
    assert kafka["config"]["auto.create.topics.enable"] is False
    assert kafka["config"]["min.insync.replicas"] == 2
    pools = {p["metadata"]["name"]: p["spec"] for p in of_kind(prod, "KafkaNodePool")}
    assert pools["controller"]["roles"] == ["controller"] and pools["controller"]["replicas"] == 3
    assert pools["broker"]["roles"] == ["broker"] and pools["broker"]["replicas"] >= 3


def test_postgres_has_three_instances_backups_and_one_database_and_role_per_service(prod: list[Doc]) -> None:
    cluster = named(prod, "Cluster", "juhe-pg")["spec"]
    assert cluster["instances"] == 3
    store = cluster["backup"]["barmanObjectStore"]
    assert store["s3Credentials"]["secretAccessKey"]["name"] == "juhe-pg-backup"
    assert of_kind(prod, "ScheduledBackup")[0]["spec"]["cluster"]["name"] == "juhe-pg"
    owners = {cluster["bootstrap"]["initdb"]["database"]: cluster["bootstrap"]["initdb"]["owner"]}
    owners |= {d["spec"]["name"]: d["spec"]["owner"] for d in of_kind(prod, "Database")}
    roles = {cluster["bootstrap"]["initdb"]["owner"]: cluster["bootstrap"]["initdb"]["secret"]["name"]}
    roles |= {r["name"]: r["passwordSecret"]["name"] for r in cluster["managed"]["roles"]}
    for name, spec in SERVICES.items():
        assert owners[str(spec.database)] == f"juhe_{name}"
        secret = roles[f"juhe_{name}"]
        container = named(prod, "Deployment", f"juhe-{name}")["spec"]["template"]["spec"]["containers"][0]
        refs = {e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for e in container["env"]}
        assert secret in refs  # the service logs in as the role the operator manages
    databases = {d["spec"]["name"]: d["spec"] for d in of_kind(prod, "Database")}
    assert {"name": "btree_gist", "ensure": "present"} in databases["juhe_routing"]["extensions"]


def test_dev_overlay_is_small_and_has_the_sandboxes(dev: list[Doc]) -> None:
    assert named(dev, "Cluster", "juhe-pg")["spec"]["instances"] == 1
    assert "backup" not in named(dev, "Cluster", "juhe-pg")["spec"]
    assert of_kind(dev, "ScheduledBackup") == []
    assert {t["spec"]["replicas"] for t in of_kind(dev, "KafkaTopic")} == {1}
    assert {d["metadata"]["name"] for d in of_kind(dev, "Deployment") if "sandbox" in d["metadata"]["name"]} == {
        "juhe-sandbox-wechatpay",
        "juhe-sandbox-alipay",
        "juhe-sandbox-unionpay",
        "juhe-sandbox-ecny",
        "juhe-sandbox-bank",
        "juhe-sandbox-identity",
    }


def test_prod_has_no_sandbox(prod: list[Doc]) -> None:
    assert not [d for d in prod if "sandbox" in json.dumps(d["metadata"])]


def test_monitoring_uses_only_metrics_the_code_exports(prod: list[Doc]) -> None:
    exported = set()
    for path in [p for top in ("libs", "services", "gateway") for p in (REPO_ROOT / top).rglob("*.py")]:
        if "tests" in path.parts:
            continue
        exported |= set(re.findall(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"(juhe_[a-z_]+)"', path.read_text()))
    assert "juhe_outbox_unpublished" in exported
    text = json.dumps(of_kind(prod, "PrometheusRule")) + json.dumps(of_kind(prod, "HorizontalPodAutoscaler"))
    text += "".join(p.read_text() for p in (REPO_ROOT / "deploy" / "observability").glob("**/*.json"))
    used = set(re.findall(r"\bjuhe_[a-z_]+", text))
    suffixes = ("_bucket", "_count", "_sum")
    unknown = {m for m in used if m not in exported and not any(m.removesuffix(s) in exported for s in suffixes)}
    assert not unknown
    service_monitors = {m["metadata"]["name"] for m in of_kind(prod, "ServiceMonitor")}
    assert service_monitors == {f"juhe-{name}" for name in {**SERVICES, **FRONTENDS}}


def secret_refs(value: Any) -> Iterator[tuple[str, str]]:
    """Every (Secret, key) an object reads: env secretKeyRefs, and the CloudNativePG roles' basic-auth Secrets."""
    if isinstance(value, dict):
        ref = value.get("secretKeyRef")
        if isinstance(ref, dict):
            yield ref["name"], ref["key"]
        for key in ("passwordSecret", "secret"):
            if isinstance(value.get(key), dict) and set(value[key]) == {"name"}:
                yield value[key]["name"], "username"
                yield value[key]["name"], "password"
        for item in value.values():
            yield from secret_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from secret_refs(item)


def test_the_gateway_checks_kyc_with_a_real_secret_and_dev_uses_the_identity_sandbox(
    prod: list[Doc], dev: list[Doc]
) -> None:
    """Onboarding's KYC (docs/onboarding.md): the provider's URL is a site setting, its shared secret a Secret (prod
    refuses the demo value); in dev the identity sandbox verifies with the same Secret the gateway signs with."""
    for docs, identity_url in ((prod, "https://identity.example.com"), (dev, "http://juhe-sandbox-identity:8105")):
        assert named(docs, "ConfigMap", "juhe-gateway")["data"]["JUHE_GATEWAY_IDENTITY_BASE_URL"] == identity_url
        for name in ("juhe-gateway", "juhe-gateway-worker"):
            env = named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
            refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in env}
            assert refs["JUHE_GATEWAY_IDENTITY_SECRET"] == {"name": "juhe-gateway", "key": "identity-secret"}
    sandbox = named(dev, "Deployment", "juhe-sandbox-identity")["spec"]["template"]["spec"]["containers"][0]
    assert "sandboxes.identity.settings import IdentitySettings" in sandbox["command"][-1]  # where the class lives
    refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in sandbox["env"]}
    assert refs["JUHE_SANDBOX_IDENTITY_SECRET"] == {"name": "juhe-gateway", "key": "identity-secret"}


def test_dev_make_secrets_creates_every_secret_the_dev_overlay_reads_with_random_values(dev: list[Doc]) -> None:
    """The dev overlay's README step exists and works: `make-secrets.sh --print` (no cluster) gives a valid Secret for
    every (Secret, key) the overlay reads, random on each run, never a demo value; the identity sandbox's callers
    share its one secret."""
    script = K8S / "overlays" / "dev" / "make-secrets.sh"

    def made() -> dict[str, Doc]:
        out = subprocess.run([str(script), "--print"], capture_output=True, text=True, check=True, timeout=60)
        return {d["metadata"]["name"]: d for d in yaml.safe_load_all(out.stdout) if d}

    first, second = made(), made()
    missing = sorted({f"{n}/{k}" for n, k in secret_refs(dev) if k not in first.get(n, {}).get("stringData", {})})
    assert not missing, f"make-secrets.sh does not create {missing}"
    for secret in first.values():
        assert secret["metadata"]["namespace"] == "juhe-dev"
        kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    ring = {f"{name}-{part}" for name in ("credentials", "secrets") for part in ("encryption-key-id", "retired-keys")}
    values = {(n, k): v for n, s in first.items() for k, v in s["stringData"].items() if k not in {"username", *ring}}
    assert all(second[n]["stringData"][k] != v for (n, k), v in values.items())  # random, nothing committed
    assert DEMO_IDENTITY_SECRET not in values.values() and DEMO_CREDENTIALS_KEY not in values.values()
    gateway, ledger = first["juhe-gateway"]["stringData"], first["juhe-ledger"]["stringData"]
    assert gateway["identity-secret"] == ledger["wallet-identity-secret"]  # one identity sandbox, one secret
    assert len(base64.b64decode(gateway["credentials-encryption-key"])) == 32
    # The key rings start with one current key, id k1, nothing retired (docs/operations.md, "Sealing keys").
    cashier = first["juhe-cashier"]["stringData"]
    assert (gateway["credentials-encryption-key-id"], json.loads(gateway["credentials-retired-keys"])) == ("k1", {})
    assert (cashier["secrets-encryption-key-id"], json.loads(cashier["secrets-retired-keys"])) == ("k1", {})
