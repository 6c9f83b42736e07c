"""docker-compose.yml and the Prometheus config cannot drift from the declared services
(shared/services.py): every service runs in compose and is scraped, and nothing else is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.services import DECLARED, ServiceSpec

ROOT = Path(__file__).resolve().parents[2]


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def compose_drift(compose: dict[str, Any], declared: tuple[ServiceSpec, ...]) -> list[str]:
    services = compose["services"]
    problems = [
        f"{spec.name}: not in compose, or not running {spec.module}"
        for spec in declared
        if services.get(spec.name, {}).get("command") != ["python", "-m", spec.module]
    ]
    modules = {spec.module for spec in declared}
    problems += [
        f"{name}: runs {' '.join(c['command'])}, which is not a declared service"
        for name, c in services.items()
        if c.get("command", [])[:2] == ["python", "-m"]
        and c["command"][2].startswith("services.")
        and c["command"][2] not in modules
    ]
    return problems


def scrape_drift(prometheus: dict[str, Any], declared: tuple[ServiceSpec, ...]) -> list[str]:
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "whatsapp-bot"]
    scraped = {
        target: group.get("labels", {}).get("service")
        for group in job["static_configs"]
        for target in group["targets"]
    }
    wanted = {f"{s.name}:{s.port}": s.name for s in declared}
    return [f"scraped but not declared: {t}" for t in scraped.keys() - wanted.keys()] + [
        f"declared but not scraped (or mislabelled): {t}"
        for t, name in wanted.items()
        if scraped.get(t) != name
    ]


def test_compose_runs_every_declared_service_and_no_other() -> None:
    assert compose_drift(load("docker-compose.yml"), DECLARED) == []


def test_prometheus_scrapes_every_declared_service_and_no_other() -> None:
    assert scrape_drift(load("deploy/prometheus/prometheus.yml"), DECLARED) == []


@pytest.mark.parametrize("check", [compose_drift, scrape_drift])
def test_a_service_added_to_the_list_only_is_caught(check: Any) -> None:
    path = "docker-compose.yml" if check is compose_drift else "deploy/prometheus/prometheus.yml"
    added = (*DECLARED, ServiceSpec("billing", 8099))
    assert any("billing" in p for p in check(load(path), added))
    fewer = DECLARED[:-1]  # a service left in the deploy files but no longer declared
    assert check(load(path), fewer) != []


def exposure_problems(compose: dict[str, Any], declared: tuple[ServiceSpec, ...]) -> list[str]:
    """Only world-facing services publish a port beyond this host; every service binds every
    interface inside its container (else nothing reaches it there)."""
    public = {s.name: s for s in declared if s.public}
    problems = []
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            host = str(mapping).rsplit(":", 2)[0] if str(mapping).count(":") == 2 else ""
            if host != "127.0.0.1" and name not in public:
                problems.append(f"{name} publishes {mapping} beyond this host")
    for spec in declared:
        service = compose["services"].get(spec.name, {})
        if service.get("environment", {}).get("BIND_ADDRESS") != "0.0.0.0":
            problems.append(f"{spec.name}: BIND_ADDRESS is not 0.0.0.0 in its container")
        if spec.public and f"{spec.port}:{spec.port}" not in service.get("ports", []):
            problems.append(f"{spec.name} faces the world but does not publish {spec.port}")
    return problems


def test_compose_publishes_only_the_world_facing_ports() -> None:
    assert exposure_problems(load("docker-compose.yml"), DECLARED) == []


def test_a_published_database_port_would_be_caught() -> None:
    compose = load("docker-compose.yml")
    compose["services"]["postgres"]["ports"] = ["5432:5432"]
    compose["services"]["webhook_relay"]["ports"] = ["0.0.0.0:8085:8085"]
    assert exposure_problems(compose, DECLARED) == [
        "postgres publishes 5432:5432 beyond this host",
        "webhook_relay publishes 0.0.0.0:8085:8085 beyond this host",
    ]


def v2_only_syntax(compose: dict[str, Any]) -> list[str]:
    """Keys Debian's compose v1.29 rejects (docs/docker.md): an env_file given as a mapping."""
    return [
        f"{name}: env_file {entry!r} is not a plain path"
        for name, service in compose["services"].items()
        for entry in (
            service.get("env_file", [])
            if isinstance(service.get("env_file"), list)
            else [service.get("env_file", "")]
        )
        if not isinstance(entry, str)
    ]


def test_compose_keeps_to_syntax_compose_v1_reads() -> None:
    assert v2_only_syntax(load("docker-compose.yml")) == []
    broken = load("docker-compose.yml")
    broken["services"]["ingress"]["env_file"] = [{"path": ".env", "required": False}]
    assert v2_only_syntax(broken) == [
        "ingress: env_file {'path': '.env', 'required': False} is not a plain path"
    ]
