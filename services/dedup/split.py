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
    customer: str  # the id the message came from: its wa_id, else its business-scoped user id
    customer_name: str
    wamid: str
    type: str
    timestamp: str
    message: dict[str, Any]
    contact: dict[str, Any] | None
    wa_id: str = ""
    user_id: str = ""
    business_id: str = ""  # set by dedup's routing: "" until then, and for nobody's number
    address: str = ""  # set by routing: the id replies go to (`customer` is then the key)

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
    business_id: str = ""
    customer: str = ""  # the recipient's key, when an erasure gave them an epoch (routing)

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.phone_number_id, self.customer or self.recipient_id)


@dataclass(frozen=True)
class Change:
    """Anything else: other fields (calls, account_update, templates), value-level errors,
    payloads of a shape we do not know."""

    waba_id: str
    field: str
    value: Any
    business_id: str = ""

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self.value)).hexdigest()


@dataclass(frozen=True)
class Echo:
    """A message the business sent from its WhatsApp phone app (the `smb_message_echoes`
    field): already delivered by Meta, a person answering the customer."""

    waba_id: str
    phone_number_id: str
    customer: str  # the recipient: its wa_id, else its business-scoped user id
    wamid: str
    type: str
    timestamp: str
    message: dict[str, Any]
    wa_id: str = ""
    user_id: str = ""
    business_id: str = ""

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.phone_number_id, self.customer)


@dataclass(frozen=True)
class Preference:
    """A customer's marketing preference (`user_preferences`): stop, resume or signup."""

    waba_id: str
    phone_number_id: str
    wa_id: str
    user_id: str
    value: str
    category: str
    detail: str
    timestamp: str
    raw: dict[str, Any]
    customer: str = ""  # set by dedup's routing: the customer's key
    business_id: str = ""


Item = Inbound | Status | Echo | Change | Preference

# Meta's ids are short (a wamid is about 60 characters, a wa_id at most 15 digits): anything
# much longer, or with spaces or control characters, cannot be one. Such an item is kept
# whole as a Change instead of naming streams and routing keys (which have size limits).
MAX_ID = 100


def identifier(value: Any) -> str | None:
    """`value` as an id fit for a stream name and a routing key, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        return None
    return value if value.isprintable() and not any(c.isspace() for c in value) else None


def _contact_for(
    value: dict[str, Any], wa_id: str | None, user_id: str | None
) -> dict[str, Any] | None:
    contacts = value.get("contacts") or []
    if not isinstance(contacts, list):
        return None
    for contact in contacts:
        if isinstance(contact, dict) and (
            (wa_id and contact.get("wa_id") == wa_id)
            or (user_id and contact.get("user_id") == user_id)
        ):
            return contact
    return contacts[0] if contacts and isinstance(contacts[0], dict) else None


def _messages_value(waba_id: str, value: dict[str, Any]) -> list[Item]:
    items: list[Item] = []
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    phone = identifier(metadata.get("phone_number_id"))
    display = str(metadata.get("display_phone_number", ""))[:MAX_ID]
    messages, statuses = value.get("messages") or [], value.get("statuses") or []
    if not isinstance(messages, list) or not isinstance(statuses, list) or phone is None:
        return [Change(waba_id, "messages.unrecognized", value)]
    for message in messages:
        if not isinstance(message, dict):
            items.append(Change(waba_id, "messages.unrecognized", message))
            continue
        wamid = identifier(message.get("id"))
        # Customers with a username that hides their number come as a business-scoped user
        # id, with or without the wa_id (platform-facts, identity).
        wa_id = identifier(message.get("from")) if message.get("from") else None
        user_id = identifier(message.get("from_user_id") or message.get("user_id"))
        contact = _contact_for(value, wa_id, user_id)
        if user_id is None and contact is not None and contact.get("user_id"):
            user_id = identifier(contact.get("user_id"))
        customer = wa_id or user_id
        if wamid is None or customer is None or (message.get("from") and wa_id is None):
            items.append(Change(waba_id, "messages.unrecognized", message))
            continue
        profile = (contact or {}).get("profile")
        name = profile.get("name", "") if isinstance(profile, dict) else ""
        items.append(
            Inbound(
                waba_id=waba_id,
                phone_number_id=phone,
                display_phone_number=display,
                customer=customer,
                customer_name=str(name),
                wamid=wamid,
                type=str(message.get("type", "unknown"))[:MAX_ID],
                timestamp=str(message.get("timestamp", ""))[:MAX_ID],
                message=message,
                contact=contact,
                wa_id=wa_id or "",
                user_id=user_id or "",
            )
        )
    for status in statuses:
        wamid = identifier(status.get("id")) if isinstance(status, dict) else None
        if not isinstance(status, dict) or wamid is None:
            items.append(Change(waba_id, "statuses.unrecognized", status))
            continue
        recipient = identifier(status.get("recipient_id")) or ""
        items.append(
            Status(
                waba_id=waba_id,
                phone_number_id=phone,
                wamid=wamid,
                status=str(status.get("status", "unknown"))[:MAX_ID],
                timestamp=str(status.get("timestamp", ""))[:MAX_ID],
                recipient_id=recipient,
                raw=status,
            )
        )
    if value.get("errors"):
        items.append(Change(waba_id, "messages.errors", value))
    return items


def _echoes_value(waba_id: str, change: dict[str, Any], value: dict[str, Any]) -> list[Item]:
    metadata = value.get("metadata")
    phone = identifier(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
    echoes = value.get("message_echoes")
    if phone is None or not isinstance(echoes, list):
        return [Change(waba_id, "smb_message_echoes", change)]
    items: list[Item] = []
    for echo in echoes:
        wamid = identifier(echo.get("id")) if isinstance(echo, dict) else None
        if not isinstance(echo, dict) or wamid is None:
            items.append(Change(waba_id, "smb_message_echoes", echo))
            continue
        wa_id = identifier(echo.get("to")) if echo.get("to") else None
        user_id = identifier(echo.get("to_user_id"))
        customer = wa_id or user_id
        if customer is None or (echo.get("to") and wa_id is None):
            items.append(Change(waba_id, "smb_message_echoes", echo))
            continue
        items.append(
            Echo(
                waba_id=waba_id,
                phone_number_id=phone,
                customer=customer,
                wamid=wamid,
                type=str(echo.get("type", "unknown"))[:MAX_ID],
                timestamp=str(echo.get("timestamp", ""))[:MAX_ID],
                message=echo,
                wa_id=wa_id or "",
                user_id=user_id or "",
            )
        )
    return items


def _preferences_value(waba_id: str, value: dict[str, Any]) -> list[Item]:
    """`user_preferences`: one item per customer's preference (platform-facts, Opt-out).
    The `contacts` beside them may name another customer: only an entry's own wa_id (or a
    contact with that wa_id) says whose preference it is."""
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    phone = identifier(metadata.get("phone_number_id")) or ""
    entries = value.get("user_preferences")
    if not isinstance(entries, list):
        return [Change(waba_id, "user_preferences.unrecognized", value)]
    items: list[Item] = []
    for entry in entries:
        wa_id = identifier(entry.get("wa_id")) if isinstance(entry, dict) else None
        user_id = identifier(entry.get("user_id")) if isinstance(entry, dict) else None
        kind = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not (wa_id or user_id) or not isinstance(kind, str):
            items.append(Change(waba_id, "user_preferences.unrecognized", entry))
            continue
        if wa_id and not user_id:
            contact = _contact_for(value, wa_id, None)
            if contact is not None and contact.get("wa_id") == wa_id and contact.get("user_id"):
                user_id = identifier(contact.get("user_id"))
        items.append(
            Preference(
                waba_id=waba_id,
                phone_number_id=phone,
                wa_id=wa_id or "",
                user_id=user_id or "",
                value=kind[:MAX_ID],
                category=str(entry.get("category", ""))[:MAX_ID],
                detail=str(entry.get("detail", ""))[:1000],
                timestamp=str(entry.get("timestamp", ""))[:MAX_ID],
                raw=entry,
            )
        )
    return items


def split_delivery(payload: Any) -> list[Item]:
    """Every item of a delivery, in the order Meta listed them. Whatever its shape, nothing
    is dropped: what is not a message or a status is kept whole as a Change."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return [Change("unknown", "unrecognized", payload)]
    items: list[Item] = []
    for entry in entries:
        changes = (entry.get("changes") or []) if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            items.append(Change("unknown", "unrecognized", entry))
            continue
        waba_id = identifier(entry.get("id")) or "unknown"
        for change in changes:
            field = change.get("field") if isinstance(change, dict) else None
            value = change.get("value") if isinstance(change, dict) else None
            if field == "messages" and isinstance(value, dict):
                try:
                    items.extend(_messages_value(waba_id, value))
                except (AttributeError, KeyError, TypeError):
                    # A messages value of a shape we do not know (e.g. contacts not objects):
                    # record the change whole rather than fail the delivery.
                    items.append(Change(waba_id, "messages.unrecognized", change))
            elif field == "smb_message_echoes" and isinstance(value, dict):
                items.extend(_echoes_value(waba_id, change, value))
            elif field == "user_preferences" and isinstance(value, dict):
                items.extend(_preferences_value(waba_id, value))
            else:
                name = field if isinstance(field, str) and identifier(field) else "unrecognized"
                items.append(Change(waba_id, name, change))
    return items
