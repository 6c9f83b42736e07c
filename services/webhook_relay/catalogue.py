"""The public event catalogue: which internal events a CRM can subscribe to, and in what form.

Pure: an internal event (as recorded in the event store) goes in, a public event comes out,
or None for events that are not part of the catalogue (internal bookkeeping, subscription
changes, ...). The public form is a contract with the CRMs: fields are picked explicitly (an
internal field added later does not leak out), and a change that is not backward compatible
needs a new SCHEMA_VERSION. To publish another internal event, add one `Mapping` to `MAPPINGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from shared.eventstore import RecordedEvent

SCHEMA_VERSION = 1
_encode = msgspec.json.Encoder().encode

DataBuilder = Callable[[RecordedEvent], dict[str, Any]]


@dataclass(frozen=True)
class PublicEvent:
    type: str
    id: str  # the internal event id: the same event has the same id for every endpoint
    time: str  # when the event was recorded, RFC 3339 UTC
    data: dict[str, Any]
    order_key: str  # events with the same key reach an endpoint in the order of the log

    def body(self) -> str:
        """The exact JSON an endpoint receives (signed as is, identical on every retry)."""
        envelope = {
            "type": self.type,
            "id": self.id,
            "time": self.time,
            "schema_version": SCHEMA_VERSION,
            "data": self.data,
        }
        return _encode(envelope).decode()


@dataclass(frozen=True)
class Mapping:
    public_type: str
    source: str  # the internal event type
    description: str
    build: DataBuilder


def _suffix(stream: str) -> str:
    return stream.split("-", 1)[1] if "-" in stream else stream


def _conversation(e: RecordedEvent) -> str:
    """Conversation id from the data, else from a stream named after the conversation."""
    cid = e.data.get("conversation_id")
    if cid:
        return str(cid)
    if e.stream.startswith(("conversation-", "inbox-")):
        return _suffix(e.stream)
    return ""


def _pick(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: data.get(name) for name in names}


def _message_received(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": e.version,
        **_pick(d, "wamid", "phone_number_id", "display_phone_number", "waba_id"),
        "customer": d.get("customer"),
        "customer_name": d.get("customer_name"),
        "message_type": d.get("type"),
        "timestamp": d.get("timestamp"),
        "message": d.get("message"),
    }


def _reply(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": d.get("seq"),
        **_pick(d, "text", "in_reply_to", "responder", "command_id"),
    }


def _sent(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": d.get("seq"),
        **_pick(d, "wamid", "phone_number_id", "command_id", "payload", "dry_run"),
    }


def _status(e: RecordedEvent) -> dict[str, Any]:
    return {
        "conversation_id": _conversation(e),
        **_pick(e.data, "wamid", "status", "previous", "errors"),
    }


def _send_failed(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": d.get("seq"),
        "command_id": _suffix(e.stream),
        "http_status": d.get("status"),
        **_pick(d, "code", "title"),
    }


def _turn_failed(e: RecordedEvent) -> dict[str, Any]:
    return {
        "conversation_id": _conversation(e),
        "sequence": e.data.get("seq"),
        "error": e.data.get("error"),
    }


def _account_change(e: RecordedEvent) -> dict[str, Any]:
    return _pick(e.data, "waba_id", "field", "value")


def _media_stored(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": d.get("seq"),
        **_pick(d, "wamid", "kind", "media_id", "mime_type", "size", "sha256", "caption"),
        "filename": d.get("filename"),
        "voice": d.get("voice"),
    }


def _media_transcribed(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": d.get("seq"),
        **_pick(d, "wamid", "available", "text"),
    }


def _media_failed(e: RecordedEvent) -> dict[str, Any]:
    d = e.data
    return {
        "conversation_id": _conversation(e),
        "sequence": d.get("seq"),
        **_pick(d, "wamid", "kind", "media_id", "stage", "reason", "attempts"),
    }


MAPPINGS: tuple[Mapping, ...] = (
    Mapping(
        "message.received",
        "MessageReceived",
        "A customer's message, recorded once (every type: text, media, reaction, ...).",
        _message_received,
    ),
    Mapping(
        "conversation.reply",
        "BotReplied",
        "The bot decided its reply to a customer message (before it is sent).",
        _reply,
    ),
    Mapping("message.sent", "MessageSent", "Meta accepted a message the bot sent.", _sent),
    Mapping(
        "message.status",
        "LifecycleChanged",
        "A sent message moved forward: delivered, read, played or failed.",
        _status,
    ),
    Mapping(
        "message.failed",
        "SendFailed",
        "Meta refused to send a reply for good (e.g. 131047: the 24 h window is closed).",
        _send_failed,
    ),
    Mapping(
        "conversation.failed",
        "TurnFailed",
        "A customer message could not be answered and was given up (dead-lettered).",
        _turn_failed,
    ),
    Mapping(
        "account.change",
        "ChangeReceived",
        "Any other change Meta reported for the business account (templates, calls, ...).",
        _account_change,
    ),
    Mapping("media.stored", "MediaStored", "A customer's media file was stored.", _media_stored),
    Mapping(
        "media.transcribed",
        "MediaTranscribed",
        "A customer's voice note or audio was transcribed.",
        _media_transcribed,
    ),
    Mapping(
        "media.failed", "MediaFailed", "A customer's media file could not be kept.", _media_failed
    ),
)

BY_SOURCE: dict[str, Mapping] = {m.source: m for m in MAPPINGS}
PUBLIC_TYPES: tuple[str, ...] = tuple(m.public_type for m in MAPPINGS)


def needs_conversation(event: RecordedEvent) -> bool:
    """A catalogue event whose own data cannot say which conversation it belongs to (e.g.
    MediaTranscribed): the subscription looks it up in the event's stream."""
    mapping = BY_SOURCE.get(event.type)
    return (
        mapping is not None
        and "conversation_id" in mapping.build(event)
        and not (_conversation(event))
    )


def to_public(event: RecordedEvent, conversation: str | None = None) -> PublicEvent | None:
    """`conversation`: the conversation id found elsewhere, for events that lack it."""
    mapping = BY_SOURCE.get(event.type)
    if mapping is None:
        return None
    data = mapping.build(event)
    if conversation and "conversation_id" in data and not data["conversation_id"]:
        data["conversation_id"] = conversation
    recorded = event.recorded_at
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=UTC)
    return PublicEvent(
        type=mapping.public_type,
        id=str(event.id),
        time=_rfc3339(recorded),
        data=data,
        order_key=data.get("conversation_id") or event.stream,
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def valid_filter(entry: str) -> bool:
    """A filter entry is a public type, a prefix wildcard like `message.*`, or `*`."""
    if entry == "*" or entry in PUBLIC_TYPES:
        return True
    if entry.endswith(".*"):
        prefix = entry[:-1]
        return any(t.startswith(prefix) for t in PUBLIC_TYPES)
    return False


def matches(filters: list[str] | tuple[str, ...], public_type: str) -> bool:
    """An empty filter means every event type."""
    if not filters:
        return True
    for entry in filters:
        if entry == "*" or entry == public_type:
            return True
        if entry.endswith(".*") and public_type.startswith(entry[:-1]):
            return True
    return False
