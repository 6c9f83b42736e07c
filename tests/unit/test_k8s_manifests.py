"""deploy/k8s renders, validates and cannot drift from the declared services.

Each overlay is rendered offline (tests/support/kustomize.py; compared with `kubectl
kustomize` where kubectl is installed), and every resource is validated: Kubernetes' own
kinds against the strict schemas kubernetes-validate ships, the operators' kinds
(RabbitmqCluster, CloudNativePG's Cluster, KEDA's) against their CRDs' schemas vendored in
tests/support/k8s_crds. No cluster and no network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ops import k8s
from shared.services import DECLARED, DEFAULT_QUEUES
from tests.support.kustomize import apply, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSION = "1.30.0"
CRDS = {
    (d["apiVersion"], d["kind"]): d["schema"]
    for d in (json.loads(p.read_text()) for p in (ROOT / "tests/support/k8s_crds").glob("*.json"))
}


def validate(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRDS:
        jsonschema.validate(doc, CRDS[key])
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_generated_base_is_fresh() -> None:
    assert k8s.OUT.read_text() == k8s.render(), "deploy/k8s is stale: run `make k8s`"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_resource_of_an_overlay_is_valid(overlay: Path) -> None:
    docs = render(overlay)
    assert docs
    for doc in docs:
        try:
            validate(doc)
        except Exception as exc:
            where = "/".join(str(p) for p in getattr(exc, "absolute_path", []))
            message = getattr(exc, "message", str(exc))
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            raise AssertionError(f"{name} {where}: {message}") from None


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_declared_service_is_deployed_with_probes_budget_and_scaling(overlay: Path) -> None:
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {k8s.k8s_name(s.name) for s in DECLARED}
    services, budgets = by_kind(docs, "Service"), by_kind(docs, "PodDisruptionBudget")
    scaled = by_kind(docs, "ScaledObject")
    for spec in DECLARED:
        name = k8s.k8s_name(spec.name)
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", spec.module]
        assert container["ports"] == [{"name": "http", "containerPort": spec.port}]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]["cpu"].endswith("m")
        assert services[name]["spec"]["ports"][0]["port"] == spec.port
        assert name in budgets
        if spec.stage:
            queues = {t["metadata"]["queueName"] for t in scaled[name]["spec"]["triggers"]}
            assert queues == {f"{spec.stage}.{i}" for i in range(DEFAULT_QUEUES)}
        else:
            assert name not in scaled
    # The broker and the database the services' settings name.
    assert set(by_kind(docs, "RabbitmqCluster")) == {k8s.RABBITMQ}
    assert set(by_kind(docs, "Cluster")) == {k8s.DATABASE}
    env = {e["name"]: e for e in container["env"]}
    assert env["AMQP_URL"]["value"].count("amqp://") == k8s.BROKER_NODES
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{k8s.DATABASE}-app"


def test_production_runs_three_broker_nodes_and_replicas() -> None:
    docs = render(K8S / "overlays" / "production")
    assert by_kind(docs, "RabbitmqCluster")[k8s.RABBITMQ]["spec"]["replicas"] == 3
    database = by_kind(docs, "Cluster")[k8s.DATABASE]["spec"]
    assert database["instances"] == 3 and database["minSyncReplicas"] == 1
    config = by_kind(docs, "ConfigMap")["whatsapp-bot-config"]["data"]
    assert config["QUORUM_GROUP_SIZE"] == "3"
    assert all(d["spec"]["replicas"] == 2 for d in by_kind(docs, "Deployment").values())
    assert {d["metadata"]["namespace"] for d in docs} == {"whatsapp-bot"}


def test_a_broken_manifest_fails_validation() -> None:
    (deployment,) = [d for d in render(K8S / "overlays" / "dev") if d["kind"] == "Deployment"][:1]
    apply(deployment, {"op": "replace", "path": "/spec/replicas", "value": "two"})
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    rabbit = by_kind(render(K8S / "overlays" / "dev"), "RabbitmqCluster")[k8s.RABBITMQ]
    apply(rabbit, {"op": "add", "path": "/spec/replicaz", "value": 3})
    rabbit["spec"]["replicas"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        validate(rabbit)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kubectl_kustomize_renders_the_same(overlay: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout

    def keyed(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    assert keyed([d for d in yaml.safe_load_all(out) if d]) == keyed(render(overlay))
