"""The Kubernetes base manifests of the services, written from the one list of services
(shared/services.py) and the bench's CPU and memory figures: `python -m ops.k8s` (`make
k8s`) writes deploy/k8s/base/services.yaml; a test fails when it is stale.

Everything else under deploy/k8s (the broker, the database, the configuration, the
overlays) is written by hand; docs/kubernetes.md explains it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import yaml

from shared.services import DECLARED, DEFAULT_QUEUES, ServiceSpec

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "k8s" / "base" / "services.yaml"
APP = "whatsapp-bot"
IMAGE = "whatsapp-bot"
RABBITMQ = "whatsapp-rabbitmq"  # the RabbitmqCluster (rabbitmq.yaml)
DATABASE = "whatsapp-db"  # the CloudNativePG Cluster (postgres.yaml)
BROKER_NODES = 3

# tests/bench/latest/results.md, "Cost": CPU seconds per 1,000 customer messages and peak
# RSS in MiB under steady load (the larger of its two load phases). Not in the bench: the
# api, given the edge's (ingress's) figures, its work per request being alike; campaigns,
# given the relay's, a poller that publishes too.
BENCH: dict[str, tuple[float, int]] = {
    "ingress": (1.61, 54),
    "dedup": (2.57, 56),
    "conversation": (3.26, 99),
    "outbound": (2.92, 56),
    "media": (0.01, 49),
    "webhook_relay": (0.17, 51),
    "api": (1.61, 54),
    "campaigns": (0.17, 51),
}
# Requests are sized for this many customer messages a second per instance; KEDA adds
# instances beyond it.
DESIGN_RATE = 50
MIN_CPU_MILLI = 50


def k8s_name(service: str) -> str:
    """Kubernetes names take no underscore."""
    return service.replace("_", "-")


def resources(service: str) -> dict[str, Any]:
    cpu_s, rss = BENCH[service]
    milli = max(MIN_CPU_MILLI, math.ceil(cpu_s * DESIGN_RATE / 1000 * 1000 / 10) * 10)
    memory = math.ceil(rss * 1.5 / 16) * 16  # headroom over the peak for bursts
    return {
        "requests": {"cpu": f"{milli}m", "memory": f"{memory}Mi"},
        "limits": {"memory": f"{memory * 2}Mi"},  # no CPU limit: throttling adds latency
    }


def broker_url() -> str:
    """Every node of the RabbitmqCluster by its stable pod name: AMQP_URL's list, so a
    service whose node dies moves to the next (docs/cluster.md)."""
    nodes = [
        f"amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@{RABBITMQ}-server-{i}."
        f"{RABBITMQ}-nodes:5672/"
        for i in range(BROKER_NODES)
    ]
    return ",".join(nodes)


def env() -> list[dict[str, Any]]:
    secret = f"{RABBITMQ}-default-user"
    return [
        {
            "name": "RABBITMQ_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}},
        },
        {
            "name": "RABBITMQ_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}},
        },
        {"name": "AMQP_URL", "value": broker_url()},
        {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": f"{DATABASE}-app", "key": "uri"}},
        },
    ]


def container(spec: ServiceSpec, command: list[str]) -> dict[str, Any]:
    return {
        "name": k8s_name(spec.name),
        "image": IMAGE,
        "command": command,
        "env": env(),
        "envFrom": [
            {"configMapRef": {"name": f"{APP}-config"}},
            {"secretRef": {"name": f"{APP}-secrets"}},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def deployment(spec: ServiceSpec) -> dict[str, Any]:
    name = k8s_name(spec.name)
    main = container(spec, ["python", "-m", spec.module])
    main["ports"] = [{"name": "http", "containerPort": spec.port}]
    main["env"] = [*main["env"], {"name": spec.port_variable, "value": str(spec.port)}]
    main["resources"] = resources(spec.name)
    main["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    main["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "failureThreshold": 6,
    }
    main["volumeMounts"] = [{"name": "run", "mountPath": "/tmp"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/component": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/component": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                    "containers": [main],
                    "volumes": [{"name": "run", "emptyDir": {}}],
                },
            },
        },
    }


def service(spec: ServiceSpec) -> dict[str, Any]:
    name = k8s_name(spec.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": name}},
        "spec": {
            "selector": {"app.kubernetes.io/component": name},
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http"}],
        },
    }


def disruption_budget(spec: ServiceSpec) -> dict[str, Any]:
    name = k8s_name(spec.name)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        # One at a time: a consumer's queues go to a standby, the rest keep serving.
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/component": name}},
        },
    }


def scaled_object(spec: ServiceSpec) -> dict[str, Any]:
    """KEDA's RabbitMQ scaler on the stage's queues: one trigger per queue (the scaler reads
    one queue each), an instance per 200 messages waiting, never more instances than queues
    (more would only stand by)."""
    name = k8s_name(spec.name)
    assert spec.stage is not None
    queues = [f"{spec.stage}.{i}" for i in range(DEFAULT_QUEUES)]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": 1,
            "maxReplicaCount": len(queues),
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "rabbitmq",
                    "metadata": {
                        "protocol": "amqp",
                        "queueName": queue,
                        "mode": "QueueLength",
                        "value": "200",
                    },
                    "authenticationRef": {"name": f"{APP}-rabbitmq"},
                }
                for queue in queues
            ],
        },
    }


def prepare_job() -> dict[str, Any]:
    """`python -m ops prepare` (migrations, the broker's topology) before the services, as
    docker compose's `prepare`; run again on every upgrade (it is idempotent)."""
    spec = DECLARED[0]
    job_container = container(spec, ["python", "-m", "ops", "prepare"])
    job_container["name"] = "prepare"
    job_container["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "prepare"},
        "spec": {
            "backoffLimit": 10,
            "template": {
                "spec": {
                    "restartPolicy": "OnFailure",
                    "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                    "containers": [job_container],
                }
            },
        },
    }


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [prepare_job()]
    for spec in DECLARED:
        docs += [deployment(spec), service(spec), disruption_budget(spec)]
        if spec.stage:
            docs.append(scaled_object(spec))
    return docs


def render() -> str:
    head = "# Written by `python -m ops.k8s` (make k8s) from shared/services.py: do not edit.\n"
    return head + yaml.safe_dump_all(documents(), sort_keys=False, width=100)


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
