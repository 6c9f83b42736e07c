"""Ids the api derives: the same input always gives the same id, so a projection rebuilt
from the event store gives every row the id it had, and a retried send the same message."""

from __future__ import annotations

import hashlib
import secrets

from shared.events.business import contact_id_for


def _digest(*parts: str, size: int = 24) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:size]


def contact_id(business_id: str, customer: str) -> str:
    """One contact per (business, customer key): opaque, and stable across rebuilds."""
    return contact_id_for(business_id, customer)


def conversation_id(phone_number_id: str, customer: str) -> str:
    """As the conversation service names it (decision 0007)."""
    return f"{phone_number_id}.{customer}"


def message_id(key_id: str, idempotency_key: str | None) -> str:
    """From the key and its Idempotency-Key (a retry is the same message), else random."""
    if idempotency_key is None:
        return "msg_" + secrets.token_hex(16)
    return "msg_" + _digest(key_id, idempotency_key, size=32)
