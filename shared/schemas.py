"""Message schemas on the broker, one tagged struct per message type (msgspec).

The AMQP `type` property carries the tag, so a stage's consumer decodes a union of the types
it handles. Conversation ids are `<phone_number_id>.<customer wa_id>` and are the routing key
of every stage, so one customer always hashes to the same queue.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Message(msgspec.Struct, tag=True, kw_only=True):
    """Base of every broker message."""


class WebhookDelivery(Message, tag="webhook.delivery"):
    """One POST from Meta, exactly as received (the raw body keeps every field)."""

    delivery_id: str
    received_at: float
    body: str  # raw JSON text as Meta sent it
    valid_json: bool = True


class CustomerMessage(Message, tag="conversation.customer_message"):
    """A new customer message, recorded in the inbox stream at position `seq`."""

    conversation_id: str
    seq: int
    wamid: str
    event: dict[str, Any]  # the MessageReceived event data, so the usual case needs no read


class SendMessage(Message, tag="outbound.send_message"):
    command_id: str  # idempotency key of this send
    conversation_id: str
    phone_number_id: str
    to: str
    payload: dict[str, Any]  # Graph API message body minus messaging_product/to
    seq: int
    received_at: float = 0.0  # when the customer message reached ingress (end-to-end latency)


class MarkRead(Message, tag="outbound.mark_read"):
    conversation_id: str
    phone_number_id: str
    wamid: str


class StatusUpdate(Message, tag="outbound.status_update"):
    conversation_id: str
    wamid: str
    status: str


OutboundCommand = SendMessage | MarkRead | StatusUpdate


# --- media (issue 3) ---------------------------------------------------------------------------


class ProcessMedia(Message, tag="media.process"):
    """Conversation asks the media service to download, store (and transcribe) a customer's
    media message; the answer comes back as MediaProcessed."""

    conversation_id: str
    seq: int
    wamid: str
    phone_number_id: str
    kind: str  # image, video, document, sticker, audio
    media: dict[str, Any]  # the message's media object as Meta sent it (id, mime_type, ...)
    received_at: float = 0.0


class MediaProcessed(Message, tag="conversation.media_processed"):
    """What became of a ProcessMedia: the file stored (and its transcript), or why not."""

    conversation_id: str
    seq: int
    wamid: str
    kind: str
    stored: bool
    sha256: str = ""
    size: int = 0
    mime_type: str = ""
    store_key: str = ""
    deduplicated: bool = False
    transcription: str = ""  # "" (not audio), "ok", "unavailable", "failed"
    transcript: str = ""
    failure: str = ""  # reason code when something failed (not_found, too_large, ...)
    error: str = ""  # what went wrong, in words


class DeliverReply(Message, tag="media.deliver_reply"):
    """A reply that goes out through the media service: spoken (voice) or, once a
    conversation has used voice, as text behind the earlier voice replies to keep order."""

    command_id: str  # the reply's SendMessage command id: one send per reply, voice or text
    conversation_id: str
    phone_number_id: str
    to: str
    text: str
    seq: int
    voice: bool
    received_at: float = 0.0


class SendMedia(Message, tag="media.send_media"):
    """Send a stored file to a customer: upload to the Graph API, then send by media id."""

    command_id: str
    conversation_id: str
    phone_number_id: str
    to: str
    kind: str  # image, document, audio, video, sticker
    store_key: str
    mime_type: str
    caption: str = ""
    filename: str = ""
    seq: int = -1
    received_at: float = 0.0
