"""Split one webhook delivery into the items it carries. Pure: no I/O, nothing dropped.

Several entries, changes, messages and statuses in one POST are normal. Every item keeps the
raw dict Meta sent; anything we do not recognise becomes a `Change` so it is still recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

_canonical = msgspec.json.Encoder(order="sorted").encode


def conversation_id(phone_number_id: str, customer: str) -> str:
    return f"{phone_number_id}.{customer}"


@dataclass(frozen=True)
class Inbound:
    """A message a customer sent (any type, known or not)."""

    waba_id: str
    phone_number_id: str
    display_phone_number: str
    customer: str
    customer_name: str
    wamid: str
    type: str
    timestamp: str
    message: dict[str, Any]
    contact: dict[str, Any] | None

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.phone_number_id, self.customer)


@dataclass(frozen=True)
class Status:
    """A delivery status of a message we sent."""

    waba_id: str
    phone_number_id: str
    wamid: str
    status: str
    timestamp: str
    recipient_id: str
    raw: dict[str, Any]

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.phone_number_id, self.recipient_id)


@dataclass(frozen=True)
class Change:
    """Anything else: other fields (calls, account_update, templates), value-level errors,
    payloads of a shape we do not know."""

    waba_id: str
    field: str
    value: Any

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self.value)).hexdigest()


Item = Inbound | Status | Change


def _contact_for(value: dict[str, Any], customer: str) -> dict[str, Any] | None:
    contacts = value.get("contacts") or []
    for contact in contacts:
        if isinstance(contact, dict) and contact.get("wa_id") == customer:
            return contact
    return contacts[0] if contacts and isinstance(contacts[0], dict) else None


def _messages_value(waba_id: str, value: dict[str, Any]) -> list[Item]:
    items: list[Item] = []
    metadata = value.get("metadata") or {}
    phone = str(metadata.get("phone_number_id", ""))
    display = str(metadata.get("display_phone_number", ""))
    for message in value.get("messages") or []:
        if not isinstance(message, dict) or not message.get("id"):
            items.append(Change(waba_id, "messages.unrecognized", message))
            continue
        customer = str(message.get("from", ""))
        contact = _contact_for(value, customer)
        name = ((contact or {}).get("profile") or {}).get("name", "")
        items.append(
            Inbound(
                waba_id=waba_id,
                phone_number_id=phone,
                display_phone_number=display,
                customer=customer,
                customer_name=str(name),
                wamid=str(message["id"]),
                type=str(message.get("type", "unknown")),
                timestamp=str(message.get("timestamp", "")),
                message=message,
                contact=contact,
            )
        )
    for status in value.get("statuses") or []:
        if not isinstance(status, dict) or not status.get("id"):
            items.append(Change(waba_id, "statuses.unrecognized", status))
            continue
        items.append(
            Status(
                waba_id=waba_id,
                phone_number_id=phone,
                wamid=str(status["id"]),
                status=str(status.get("status", "unknown")),
                timestamp=str(status.get("timestamp", "")),
                recipient_id=str(status.get("recipient_id", "")),
                raw=status,
            )
        )
    if value.get("errors"):
        items.append(Change(waba_id, "messages.errors", value))
    return items


def split_delivery(payload: Any) -> list[Item]:
    """Every item of a delivery, in the order Meta listed them."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        return [Change("unknown", "unrecognized", payload)]
    items: list[Item] = []
    for entry in payload["entry"]:
        if not isinstance(entry, dict):
            items.append(Change("unknown", "unrecognized", entry))
            continue
        waba_id = str(entry.get("id", "unknown"))
        for change in entry.get("changes") or []:
            field = change.get("field") if isinstance(change, dict) else None
            value = change.get("value") if isinstance(change, dict) else None
            if field == "messages" and isinstance(value, dict):
                try:
                    items.extend(_messages_value(waba_id, value))
                except (AttributeError, KeyError, TypeError):
                    # A messages value of a shape we do not know (e.g. metadata or contacts
                    # not objects): record the change whole rather than fail the delivery.
                    items.append(Change(waba_id, "messages.unrecognized", change))
            else:
                items.append(Change(waba_id, str(field or "unrecognized"), change))
    return items
