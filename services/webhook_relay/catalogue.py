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

from shared.crypto.erased import address
from shared.events.business import ContactErased
from shared.events.conversation import BotReplied, FlowCompleted, TurnFailed
from shared.events.dedup import ChangeReceived, MessageReceived
from shared.events.media import MediaFailed, MediaStored, MediaTranscribed
from shared.events.outbound import LifecycleChanged, MessageSent, SendFailed
from shared.eventstore import RecordedEvent, Unrecognised, stream_id

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


def _conversation(e: RecordedEvent) -> str:
    """Conversation id from the event, else from a stream named after the conversation."""
    cid = getattr(e.event, "conversation_id", "")
    if cid:
        return str(cid)
    if e.stream.startswith(("conversation-", "inbox-")):
        return stream_id(e.stream)
    return ""


def _message_received(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, MessageReceived)
    return {
        "conversation_id": _conversation(e),
        "sequence": e.version,
        "wamid": d.wamid,
        "phone_number_id": d.phone_number_id,
        "display_phone_number": d.display_phone_number,
        "waba_id": d.waba_id,
        "customer": d.reply_to(),  # the id Meta knows (the key is a pseudonym)
        "customer_name": d.customer_name,
        "message_type": d.type,
        "timestamp": d.timestamp,
        "message": d.message,
    }


def _reply(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, BotReplied)
    return {
        "conversation_id": _conversation(e),
        "sequence": d.seq,
        "text": d.text,
        "in_reply_to": d.in_reply_to,
        "responder": d.responder,
        "command_id": d.command_id,
    }


def _sent(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, MessageSent)
    return {
        "conversation_id": _conversation(e),
        "sequence": d.seq,
        "wamid": d.wamid,
        "phone_number_id": d.phone_number_id,
        "command_id": d.command_id,
        "payload": d.payload,
        "dry_run": d.dry_run,
    }


def _status(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, LifecycleChanged)
    return {
        "conversation_id": _conversation(e),
        "wamid": d.wamid,
        "status": d.status,
        "previous": d.previous,
        "errors": d.errors,
    }


def _send_failed(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, SendFailed)
    return {
        "conversation_id": _conversation(e),
        "sequence": d.seq,
        "command_id": stream_id(e.stream),
        "http_status": d.status,
        "code": d.code,
        "title": d.title,
    }


def _turn_failed(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, TurnFailed)
    return {"conversation_id": _conversation(e), "sequence": d.seq, "error": d.error}


def _flow_completed(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, FlowCompleted)
    cid = _conversation(e)
    number, _, customer = cid.partition(".")
    return {
        "conversation_id": cid,
        "sequence": d.seq,
        "phone_number_id": number,
        "customer": d.address or address(customer),
        "name": d.name,
        "flow": d.flow,
        "slots": dict(d.slots),
    }


def _account_change(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, ChangeReceived)
    return {"waba_id": d.waba_id, "field": d.field, "value": d.value}


def _media_stored(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, MediaStored)
    return {
        "conversation_id": _conversation(e),
        "sequence": d.seq,
        "wamid": d.wamid,
        "kind": d.kind,
        "media_id": d.media_id,
        "mime_type": d.mime_type,
        "size": d.size,
        "sha256": d.sha256,
        "caption": d.caption,
        "filename": d.filename,
        "voice": d.voice,
    }


def _media_transcribed(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, MediaTranscribed)
    return {
        "conversation_id": _conversation(e),
        "sequence": d.seq,
        "wamid": d.wamid,
        "available": d.available,
        "text": d.text,
    }


def _media_failed(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, MediaFailed)
    return {
        "conversation_id": _conversation(e),
        "sequence": d.seq,
        "wamid": d.wamid,
        "kind": d.kind,
        "media_id": d.media_id,
        "stage": d.stage,
        "reason": d.reason,
        "attempts": d.attempts,
    }


def _contact_erased(e: RecordedEvent) -> dict[str, Any]:
    d = e.event
    assert isinstance(d, ContactErased)
    return {"contact_id": d.contact_id, "erasure_id": d.erasure_id, "reason": d.reason}


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
        "flow.completed",
        "FlowCompleted",
        "A bot flow ended with an `emit` action: its name and the slots it collected.",
        _flow_completed,
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
    Mapping(
        "contact.erased",
        "ContactErased",
        "A contact was erased (GDPR): forget them too. Their id only, never their number.",
        _contact_erased,
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
        and not isinstance(event.event, Unrecognised)
        and "conversation_id" in mapping.build(event)
        and not (_conversation(event))
    )


def to_public(event: RecordedEvent, conversation: str | None = None) -> PublicEvent | None:
    """`conversation`: the conversation id found elsewhere, for events that lack it."""
    mapping = BY_SOURCE.get(event.type)
    if mapping is None or isinstance(event.event, Unrecognised):
        return None  # not in the catalogue, or a row that does not read back (counted)
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
