"""Endpoints (a CRM's subscription): commands in, events out. Pure: no I/O.

Every change is an event in the endpoint's stream `endpoint-<id>`. Secrets are deliberately
not in those events: an append-only log can never forget a leaked secret (nor its backups),
so the events carry only a fingerprint and the secret material lives in the endpoint's row
of the `webhook_endpoints` table, which is written in the same transaction as the events.
"""

from __future__ import annotations

import re
import secrets as _secrets
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.webhook_relay import catalogue
from services.webhook_relay.signing import fingerprint, generate_secret, secret_key
from services.webhook_relay.ssrf import MAX_URL as MAX_URL  # service.py reads it from here
from services.webhook_relay.ssrf import UnsafeUrl, parse_url
from shared.events.webhook_relay import (
    DeliveriesReplayed,
    EndpointCreated,
    EndpointDeleted,
    EndpointDisabled,
    EndpointEnabled,
    EndpointSecretRotated,
    EndpointUpdated,
)
from shared.eventstore import Event, NewEvent

DEFAULT_BUSINESS = "default"  # shared.directory's: the business the environment describes
MAX_DESCRIPTION = 1000
MAX_REASON = 1000

# Bidirectional overrides and isolates: they make a listing show other text than is stored.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


class InvalidEndpoint(ValueError):
    """A command's input is refused. `field` names the input, when it is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def new_endpoint_id() -> str:
    return "ep_" + _secrets.token_hex(12)


@dataclass(frozen=True)
class Secret:
    secret: str
    created_at: datetime
    expires_at: datetime | None = None  # set on the previous secret when it is rotated

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    url: str
    description: str = ""
    event_types: tuple[str, ...] = ()
    enabled: bool = True
    disabled_reason: str | None = None
    secrets: tuple[Secret, ...] = ()  # newest first
    version: int = -1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    # Whose events it receives (decision 0008): one business, never another's.
    business_id: str = DEFAULT_BUSINESS
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def signing_secrets(self, now: datetime) -> list[str]:
        """Every secret still valid: several signatures during a rotation."""
        return [s.secret for s in self.secrets if s.active(now)]

    def wants(self, public_type: str) -> bool:
        return catalogue.matches(self.event_types, public_type)

    def public(self) -> dict[str, Any]:
        """What the admin API shows: never the secrets themselves, nor credentials an endpoint
        registered before they were refused may still have in its URL."""
        return {
            "id": self.endpoint_id,
            "business_id": self.business_id,
            "url": redact_url(self.url),
            "description": self.description,
            "event_types": list(self.event_types),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "secret_fingerprints": [fingerprint(s.secret) for s in self.secrets],
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "version": self.version,
        }

    def __repr__(self) -> str:  # never print secrets by accident
        return f"Endpoint({self.endpoint_id}, enabled={self.enabled}, version={self.version})"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def redact_url(url: str) -> str:
    """`https://user:pass@crm/x` -> `https://***@crm/x` (only legacy rows can hold such)."""
    return _USERINFO.sub(r"\1***@", url, count=1)


def check_url_form(url: object) -> str:
    """The URL's form, whatever the relay's policy: refuses credentials (they would stay in
    the endpoint's events for good) and anything an HTTP client could read two ways."""
    try:
        parse_url(url)
    except UnsafeUrl as exc:
        raise InvalidEndpoint(f"url refused: {exc}", "url") from None
    assert isinstance(url, str)
    return url


def check_text(value: object, name: str, max_length: int) -> str:
    """A one-line text field: a string, at most `max_length` characters, and none that could
    break what stores or shows it (control characters, NUL, lone surrogates, line separators,
    bidirectional overrides)."""
    if not isinstance(value, str):
        raise InvalidEndpoint(f"{name} must be a string", name)
    if len(value) > max_length:
        raise InvalidEndpoint(f"{name} must be at most {max_length} characters", name)
    for index, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise InvalidEndpoint(
                f"{name} must not contain control characters (U+{ord(char):04X} at {index})",
                name,
            )
    return value


def check_event_types(event_types: object) -> tuple[str, ...]:
    if event_types is None:
        return ()
    if not isinstance(event_types, list) or not all(isinstance(t, str) for t in event_types):
        raise InvalidEndpoint("event_types must be a list of strings", "event_types")
    unknown = [t for t in event_types if not catalogue.valid_filter(t)]
    if unknown:
        shown = ", ".join(repr(t[:50]) for t in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise InvalidEndpoint(
            f"unknown event types {shown}; known: {', '.join(catalogue.PUBLIC_TYPES)}",
            "event_types",
        )
    return tuple(dict.fromkeys(event_types))


def check_description(description: object) -> str:
    return check_text(description, "description", MAX_DESCRIPTION)


def check_reason(reason: object) -> str:
    return check_text(reason, "reason", MAX_REASON)


def check_secret(secret: object) -> str:
    if secret is None:
        return generate_secret()
    if not isinstance(secret, str):
        raise InvalidEndpoint("secret must be a string: whsec_<base64>", "secret")
    try:
        secret_key(secret)
    except ValueError as exc:
        raise InvalidEndpoint(f"invalid secret: {exc}", "secret") from None
    return secret


def _event(event: Event, by: str) -> NewEvent:
    return NewEvent(event, metadata={"actor": by})


def create(
    endpoint_id: str,
    url: str,
    description: str,
    event_types: tuple[str, ...],
    secret: str,
    now: datetime,
    business_id: str = DEFAULT_BUSINESS,
) -> tuple[Endpoint, list[NewEvent]]:
    # Checked here as well as at the API: whatever the caller, no event gets such a URL.
    url = check_url_form(url)
    description = check_description(description)
    endpoint = Endpoint(
        endpoint_id=endpoint_id,
        url=url,
        description=description,
        event_types=event_types,
        secrets=(Secret(secret, now),),
        created_at=now,
        updated_at=now,
        business_id=business_id,
    )
    event = _event(
        EndpointCreated(
            endpoint_id=endpoint_id,
            business_id=business_id,
            url=url,
            description=description,
            event_types=list(event_types),
            secret_fingerprint=fingerprint(secret),
        ),
        "admin",
    )
    return endpoint, [event]


def update(
    endpoint: Endpoint,
    now: datetime,
    url: str | None = None,
    description: str | None = None,
    event_types: tuple[str, ...] | None = None,
) -> tuple[Endpoint, list[NewEvent]]:
    changes: dict[str, Any] = {}
    if url is not None and url != endpoint.url:
        changes["url"] = check_url_form(url)
    if description is not None and description != endpoint.description:
        changes["description"] = check_description(description)
    if event_types is not None and event_types != endpoint.event_types:
        changes["event_types"] = list(event_types)
    if not changes:
        return endpoint, []
    updated = replace(
        endpoint,
        url=changes.get("url", endpoint.url),
        description=changes.get("description", endpoint.description),
        event_types=tuple(changes.get("event_types", endpoint.event_types)),
        updated_at=now,
    )
    return updated, [_event(EndpointUpdated(endpoint_id=endpoint.endpoint_id, **changes), "admin")]


def rotate_secret(
    endpoint: Endpoint, new_secret: str, grace: timedelta, now: datetime
) -> tuple[Endpoint, list[NewEvent]]:
    """The new secret signs from now on; the current one keeps signing too until `grace` has
    passed, so the CRM can switch without losing a delivery. Older ones are dropped."""
    expires = now + grace
    kept = tuple(
        replace(s, expires_at=expires if s.expires_at is None else min(s.expires_at, expires))
        for s in endpoint.secrets
        if s.active(now)
    )
    updated = replace(
        endpoint,
        secrets=(Secret(new_secret, now), *kept)[:3],
        updated_at=now,
    )
    event = _event(
        EndpointSecretRotated(
            endpoint_id=endpoint.endpoint_id,
            secret_fingerprint=fingerprint(new_secret),
            previous_fingerprints=[fingerprint(s.secret) for s in kept],
            previous_valid_until=expires.isoformat(),
        ),
        "admin",
    )
    return updated, [event]


def disable(
    endpoint: Endpoint, reason: str, by: str, now: datetime
) -> tuple[Endpoint, list[NewEvent]]:
    if not endpoint.enabled:
        return endpoint, []
    reason = check_reason(reason)
    updated = replace(endpoint, enabled=False, disabled_reason=reason, updated_at=now)
    return updated, [_event(EndpointDisabled(endpoint_id=endpoint.endpoint_id, reason=reason), by)]


def enable(endpoint: Endpoint, now: datetime) -> tuple[Endpoint, list[NewEvent]]:
    if endpoint.enabled:
        return endpoint, []
    updated = replace(endpoint, enabled=True, disabled_reason=None, updated_at=now)
    return updated, [_event(EndpointEnabled(endpoint_id=endpoint.endpoint_id), "admin")]


def delete(endpoint: Endpoint, now: datetime) -> tuple[Endpoint, list[NewEvent]]:
    updated = replace(endpoint, enabled=False, deleted=True, secrets=(), updated_at=now)
    return updated, [_event(EndpointDeleted(endpoint_id=endpoint.endpoint_id), "admin")]


def replayed(endpoint: Endpoint, scope: str, count: int, **detail: Any) -> list[NewEvent]:
    """Replays are operations, not configuration, but recorded too: who resent what."""
    event = DeliveriesReplayed(endpoint_id=endpoint.endpoint_id, scope=scope, count=count, **detail)
    return [_event(event, "admin")]
