"""The Helm chart (deploy/helm/taper), rendered with helm (built by `make tools`) and checked:
`helm lint --strict`, every rendered manifest against the Kubernetes schemas of the versions in
K8S_VERSIONS (kubernetes-validate, strict), and what the issue asks of it: every service and every
topic of contracts/topics.py, the cluster shape of deploy/cluster_shape.py, probes, grace, PDBs,
spread, migration hooks, secrets referenced never inlined, production settings that the services
accept, NetworkPolicies, KEDA. Without helm the tests fail under TAPER_REQUIRE_INTEGRATION=1 / CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from contracts import ALL_TOPICS, topics_consumed_by
from deploy import chart, cluster_shape
from tests.deploy.conftest import ROOT, setting_env_names, settings_class
from tests.plugins.infra import unavailable

CHART = ROOT / "deploy" / "helm" / "taper"
HELM_IN_TREE = ROOT / "var" / "tools" / "bin" / "helm"
# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest bundled schemas.
K8S_VERSIONS = ("1.33.0", "1.37.0")
# Custom resources have no schema in kubernetes-validate; their operators' CRDs are not vendored
# here, so the tests below check their fields (topics, partitions, replicas, triggers) directly.
CUSTOM_KINDS = {"KafkaTopic", "ScaledObject", "TriggerAuthentication"}
SECRETISH = ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL", "ROUTING_KEY", "ACCOUNT_SID")
SERVICES = cluster_shape.SERVICES
KEDA = ("--set", "keda.enabled=true", "--set", "gateway.ingress.enabled=true")


def helm() -> str:
    found = str(HELM_IN_TREE) if HELM_IN_TREE.exists() else shutil.which("helm")
    if found is None:
        unavailable("helm not found: `make tools` builds it into var/tools/bin")
    assert found is not None
    return found


@cache
def _render(*extra: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [helm(), "template", "taper", str(CHART), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def render(*extra: str) -> list[dict[str, Any]]:
    return list(_render(*extra))


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def name(service: str) -> str:
    return "taper-" + service.replace("_", "-")


def container_env(doc: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


@pytest.mark.parametrize("extra", [(), KEDA], ids=["default", "keda+ingress"])
def test_helm_lint_strict(extra: tuple[str, ...]) -> None:
    done = subprocess.run(
        [helm(), "lint", "--strict", str(CHART), *extra], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("extra", [(), KEDA], ids=["default", "keda+ingress"])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_kubernetes(extra: tuple[str, ...], version: str) -> None:
    checked = Counter[str]()
    for doc in render(*extra):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # its str() is the whole schema
            where = "/".join(str(p) for p in exc.path)
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} ({version}) {where}: {exc.message}"
            )
        checked[doc["kind"]] += 1
    assert sum(checked.values()) >= 4 * 4 + 4, checked  # Deployment, Service, PDB, Job each


def test_resource_counts() -> None:
    """The closing note's figures; a change in them is a change in what the chart deploys."""
    default = Counter(d["kind"] for d in render())
    assert default == {
        "Deployment": 5,  # four services + the gateway
        "Service": 5,
        "PodDisruptionBudget": 5,
        "Job": 4,  # migration hooks
        "ConfigMap": 1,  # the gateway's nginx configuration
        "NetworkPolicy": 6,  # four services, the gateway, the migration jobs
        "KafkaTopic": 2 * len(ALL_TOPICS),  # every topic and its DLQ
    }
    keda = Counter(d["kind"] for d in render(*KEDA))
    assert keda - default == {
        "ScaledObject": 4,
        "TriggerAuthentication": 4,
        "Secret": 4,  # KEDA's SASL mechanism and user name (no password: that is referenced)
        "Ingress": 1,
    }


def test_values_defaults_are_the_rehearsed_cluster_shape() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kafka"]["brokers"] == cluster_shape.BROKERS
    assert values["kafka"]["replicationFactor"] == cluster_shape.REPLICATION_FACTOR
    assert values["kafka"]["minInsyncReplicas"] == cluster_shape.MIN_INSYNC_REPLICAS
    assert values["replicasPerService"] == cluster_shape.REPLICAS_PER_SERVICE
    assert values["keda"]["minReplicas"] == cluster_shape.REPLICAS_PER_SERVICE
    assert values["keda"]["maxReplicas"] == max(t.partitions for t in ALL_TOPICS)
    assert sorted(values["services"]) == sorted(cluster_shape.SERVICES)


def test_generated_files_agree_with_the_contracts_and_the_gateway_templates() -> None:
    assert chart.main(["--check"]) == 0, "run `python -m deploy.chart --write`"


def test_every_topic_and_dlq_is_a_kafka_topic_with_the_rehearsed_shape() -> None:
    topics = {d["spec"]["topicName"]: d for d in render() if d["kind"] == "KafkaTopic"}
    wanted = {t.name: t for t in ALL_TOPICS} | {t.dlq: t for t in ALL_TOPICS}
    assert set(topics) == set(wanted)
    for topic_name, doc in topics.items():
        spec = doc["spec"]
        assert spec["partitions"] == wanted[topic_name].partitions
        assert spec["replicas"] == cluster_shape.REPLICATION_FACTOR
        assert spec["config"]["min.insync.replicas"] == str(cluster_shape.MIN_INSYNC_REPLICAS)
        assert spec["config"]["unclean.leader.election.enable"] == "false"
        assert doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_every_service_is_deployed_with_probes_grace_spread_and_a_pdb() -> None:
    docs = render()
    deployments, services, pdbs = (
        of_kind(docs, k) for k in ("Deployment", "Service", "PodDisruptionBudget")
    )
    for svc in SERVICES:
        dep = deployments[name(svc)]
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert dep["spec"]["replicas"] == cluster_shape.REPLICAS_PER_SERVICE
        assert container["args"] == ["serve", svc]
        prefix = "/api/" + svc.replace("_", "-")
        assert container["startupProbe"]["httpGet"]["path"] == prefix + "/health"
        assert container["livenessProbe"]["httpGet"]["path"] == prefix + "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == prefix + "/ready"
        # The broker client alone may take 15 s to close; the preStop sleep comes first.
        assert pod["terminationGracePeriodSeconds"] >= 15 + 5 + 30
        assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert name(svc) in services and pdbs[name(svc)]["spec"]["maxUnavailable"] == 1


def test_migrations_run_as_hooks_before_install_and_upgrade() -> None:
    jobs = of_kind(render(), "Job")
    for svc in SERVICES:
        job = jobs[name(svc) + "-migrate"]
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate", svc]


def _env_values(env: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment with each secretKeyRef replaced by a stand-in value."""
    out = {}
    for var in env:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            out[var["name"]] = f"from-secret-{ref['name']}-{ref['key']}-padding-to-32-chars"
        else:
            out[var["name"]] = var["value"]
    if any(k.endswith("_DATABASE_URL") for k in out):
        key = next(k for k in out if k.endswith("_DATABASE_URL"))
        out[key] = "postgresql+asyncpg://taper@db.internal:5432/taper"
    return out


def test_env_is_real_settings_secrets_are_referenced_and_production_accepts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render()
    workloads = {**of_kind(docs, "Deployment"), **of_kind(docs, "Job")}
    for svc in SERVICES:
        for workload in (name(svc), name(svc) + "-migrate"):
            env = container_env(workloads[workload])
            unknown = {v["name"] for v in env} - setting_env_names(svc)
            assert not unknown, f"{workload} sets variables no setting reads: {unknown}"
            for var in env:
                if any(word in var["name"] for word in SECRETISH):
                    assert "secretKeyRef" in var.get("valueFrom", {}), f"{var['name']} inlined"
            values = _env_values(env)
            assert values["TAPER_ENV"] == "production"
            assert values["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            for key in list(os.environ):
                if key.startswith(("TAPER_", "KAFKA_", svc.upper() + "_")):
                    monkeypatch.delenv(key)
            for key, value in values.items():
                monkeypatch.setenv(key, value)
            settings = settings_class(svc)()  # the production validators accept it
            assert settings.kafka_replication_factor == cluster_shape.REPLICATION_FACTOR
            assert settings.kafka_min_insync_replicas_effective == cluster_shape.MIN_INSYNC_REPLICAS


def test_network_policies_let_only_the_gateway_reach_the_services() -> None:
    policies = of_kind(render(), "NetworkPolicy")
    for svc in SERVICES:
        policy = policies[name(svc)]["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        (rule,) = policy["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
        egress_ports = {p["port"] for r in policy["egress"] for p in r.get("ports", [])}
        assert {9093, 5432, 53} <= egress_ports


def test_gateway_config_routes_to_the_chart_services() -> None:
    docs = render()
    config = of_kind(docs, "ConfigMap")["taper-gateway"]["data"]["nginx.conf"]
    services = of_kind(docs, "Service")
    for svc in SERVICES:
        port = services[name(svc)]["spec"]["ports"][0]["port"]
        assert f"server {name(svc)}:{port};" in config
    assert "127.0.0.1" not in "\n".join(
        ln for ln in config.splitlines() if not ln.lstrip().startswith("#")
    )


def test_keda_scales_each_service_on_the_lag_of_what_it_consumes() -> None:
    scaled = of_kind(render(*KEDA), "ScaledObject")
    for svc in SERVICES:
        triggers = scaled[name(svc)]["spec"]["triggers"]
        assert {t["metadata"]["topic"] for t in triggers} == {
            t.name for t in topics_consumed_by(svc)
        }
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {svc}
    deployments = of_kind(render(*KEDA), "Deployment")
    assert all("replicas" not in deployments[name(s)]["spec"] for s in SERVICES), (
        "KEDA owns the replica count: a Deployment's replicas would fight it on every upgrade"
    )


def test_gateway_config_is_valid_nginx(tmp_path: Path) -> None:
    """`nginx -t` on the rendered ConfigMap (the chart's Service names point at loopback here:
    nginx resolves upstream hosts while testing, and this machine has no cluster DNS)."""
    from deploy.localstack.gateway import GatewayLaunchError, find_nginx

    try:
        nginx = find_nginx(install=False)
    except GatewayLaunchError as exc:
        unavailable(f"nginx not found: {exc}")
    data = of_kind(render(), "ConfigMap")["taper-gateway"]["data"]
    for file_name, text in data.items():
        text = text.replace(chart.CONFIG_DIR, str(tmp_path))
        text = re.sub(r"server taper-[a-z-]+:(\d+);", r"server 127.0.0.1:\1;", text)
        (tmp_path / file_name).write_text(text)
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
