"""Events written by the webhook relay: each CRM endpoint's configuration, and the replays
an operator asked for. Stream `endpoint-<endpoint_id>`. No secret is ever in these events
(an append-only log cannot forget a leaked one): only fingerprints."""

from __future__ import annotations

import msgspec

from shared.eventstore import Event


def endpoint_stream(endpoint_id: str) -> str:
    return f"endpoint-{endpoint_id}"


class EndpointCreated(Event, kw_only=True):
    """A CRM endpoint was registered, for one business: it receives that business's events
    only. Rows recorded before businesses existed have none: the default business's."""

    endpoint_id: str
    business_id: str = "default"
    url: str
    description: str = ""
    event_types: list[str] = []
    secret_fingerprint: str = ""  # never the secret itself


class EndpointUpdated(Event, kw_only=True):
    """An endpoint's URL, description or event types changed (only what changed is set)."""

    endpoint_id: str
    url: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    event_types: list[str] | msgspec.UnsetType = msgspec.UNSET


class EndpointSecretRotated(Event, kw_only=True):
    """A new signing secret; the previous ones keep signing until `previous_valid_until`."""

    endpoint_id: str
    secret_fingerprint: str
    previous_fingerprints: list[str] = []
    previous_valid_until: str = ""


class EndpointDisabled(Event, kw_only=True):
    """Deliveries to the endpoint stopped (by an operator, or on the CRM's 410)."""

    endpoint_id: str
    reason: str = ""


class EndpointEnabled(Event, kw_only=True):
    """Deliveries to the endpoint resumed."""

    endpoint_id: str


class EndpointDeleted(Event, kw_only=True):
    """The endpoint was deleted, with its secrets and pending deliveries."""

    endpoint_id: str


class DeliveriesReplayed(Event, kw_only=True):
    """An operator sent deliveries again: one (`delivery`), the dead ones (`dead`), or every
    event recorded in a period (`since`)."""

    endpoint_id: str
    scope: str  # delivery, dead or since
    count: int = 0
    delivery_id: str | None = None
    since: str | None = None
    until: str | None = None


EVENTS: tuple[type[Event], ...] = (
    EndpointCreated,
    EndpointUpdated,
    EndpointSecretRotated,
    EndpointDisabled,
    EndpointEnabled,
    EndpointDeleted,
    DeliveriesReplayed,
)
