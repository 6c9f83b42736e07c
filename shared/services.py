"""The services, declared once. Everything that lists them derives from DECLARED: the stack
`make up` runs, each one's port (`<NAME>_PORT`), the broker's stages and their queue counts
(`<STAGE>_QUEUES`), the CLI's status; a test checks docker-compose.yml and the Prometheus
config against it.

A new service is one line here plus its folder `services/<name>/` (with `__main__.py`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int  # default HTTP port (/healthz, /readyz, /metrics and the service's own routes)
    stage: str | None = None  # the broker stage it consumes, if any
    public: bool = False  # faces the world (Meta, CRMs): the only ports compose publishes

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def port_variable(self) -> str:
        return f"{self.name.upper()}_PORT"


DECLARED: tuple[ServiceSpec, ...] = (
    ServiceSpec("ingress", 8080, public=True),
    ServiceSpec("dedup", 8081, stage="dedup"),
    ServiceSpec("conversation", 8082, stage="conversation"),
    ServiceSpec("outbound", 8083, stage="outbound"),
    ServiceSpec("media", 8084, stage="media"),
    ServiceSpec("webhook_relay", 8085),
    ServiceSpec("api", 8086, public=True),
    ServiceSpec("campaigns", 8087),
)

SERVICES: tuple[str, ...] = tuple(s.name for s in DECLARED)
STAGES: tuple[str, ...] = tuple(s.stage for s in DECLARED if s.stage)
DEFAULT_QUEUES = 4  # per stage, unless <STAGE>_QUEUES says otherwise


def spec_of(name: str) -> ServiceSpec:
    for spec in DECLARED:
        if spec.name == name:
            return spec
    raise KeyError(f"no service named {name!r}; the services are {', '.join(SERVICES)}")


def scale_variable(service: str) -> str:
    return f"SCALE_{service.upper()}"


def instance_name(service: str, index: int) -> str:
    """The first instance keeps the service's name (its pid and log files, its port); the
    others are `<service>-2`, `<service>-3`, ..."""
    return service if index == 1 else f"{service}-{index}"


def split_instance(instance: str) -> tuple[str, int]:
    """`conversation-2` -> ("conversation", 2); a bare service name is its instance 1.
    Service names never hold a hyphen, so the last one separates the index."""
    service, _, index = instance.rpartition("-")
    if service and index.isdigit() and int(index) >= 2:
        return spec_of(service).name, int(index)
    return spec_of(instance).name, 1


def queues_variable(stage: str) -> str:
    return f"{stage.upper()}_QUEUES"
