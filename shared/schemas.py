"""Message schemas on the broker, one tagged struct per message type (msgspec).

The AMQP `type` property carries the tag, so a stage's consumer decodes a union of the types
it handles. Conversation ids are `<phone_number_id>.<customer key>` (the key is a keyed
pseudonym, never the number) and are the routing key of every stage, so one customer always
hashes to the same queue.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.events.dedup import EchoReceived, MessageReceived


class Message(msgspec.Struct, tag=True, kw_only=True):
    """Base of every broker message."""


class WebhookDelivery(Message, tag="webhook.delivery"):
    """One POST from Meta, exactly as received (the raw body keeps every field)."""

    delivery_id: str
    received_at: float
    body: str  # raw JSON text as Meta sent it
    valid_json: bool = True
    app: str = "default"  # the Meta app whose secret signed it (shared/directory)


class CustomerMessage(Message, tag="conversation.customer_message"):
    """A new customer message, recorded in the inbox stream at position `seq`."""

    conversation_id: str
    seq: int
    wamid: str
    event: MessageReceived  # as recorded, so the usual case needs no read


class BusinessEcho(Message, tag="conversation.business_echo"):
    """A message the business sent from its phone app, recorded by dedup: the conversation
    records it in the customer's order and hands itself to a person."""

    conversation_id: str
    wamid: str
    event: EchoReceived


class SendBusinessMessage(Message, tag="conversation.send_business_message"):
    """A message the business sends through the API: the conversation records it in the
    customer's order and sends it (once, under `message_id`)."""

    message_id: str
    business_id: str
    conversation_id: str
    phone_number_id: str
    to: str
    message_type: str
    payload: dict[str, Any]
    author: str = "business"
    actor: str = ""
    # What it says, when the sender knows better than its body (a template's text with its
    # parameters, as the customer reads it): the history the bot sees.
    text: str = ""


class ChangeHandling(Message, tag="conversation.change_handling"):
    """Who answers a conversation: `handoff` (to a person: `assignee`, or waiting for one),
    `release` (back to the bot) or `close`. Sent once per request (`request_id`)."""

    request_id: str
    conversation_id: str
    action: str  # handoff, release or close
    assignee: str | None = None
    actor: str = ""
    reason: str = ""


class FlowTimeout(Message, tag="conversation.flow_timeout"):
    """A bot flow's deadline has passed (the conversation's timer): end it with its
    `timeout_message` if the customer is still at the step that set `deadline`."""

    conversation_id: str
    deadline: float


class HandBack(Message, tag="conversation.hand_back"):
    """A conversation a person has has been idle since its event `active_version` (the
    idle timer): the bot has it again unless something happened since."""

    conversation_id: str
    active_version: int


class Resume(Message, tag="conversation.resume"):
    """Go on with the customer messages waiting in the inbox: what they waited for (a
    media file, a voice reply) was given up."""

    conversation_id: str


class SendMessage(Message, tag="outbound.send_message"):
    """Send one message to a customer through the Graph API (once, by `command_id`)."""

    command_id: str  # idempotency key of this send
    conversation_id: str
    phone_number_id: str
    to: str
    payload: dict[str, Any]  # Graph API message body minus messaging_product/to
    seq: int
    received_at: float = 0.0  # when the customer message reached ingress (end-to-end latency)
    # The customer message to mark read with this send (its wamid): the reply was ready
    # before a MarkRead went ahead of it, so the read mark rides along (one hop less).
    read: str = ""


class MarkRead(Message, tag="outbound.mark_read"):
    """Mark a customer message read and show the typing indicator (cosmetic: never retried
    at the expense of replies)."""

    conversation_id: str
    phone_number_id: str
    wamid: str


class StatusUpdate(Message, tag="outbound.status_update"):
    """A status Meta reported for a sent message: outbound folds it into its lifecycle."""

    conversation_id: str
    wamid: str
    status: str


OutboundCommand = SendMessage | MarkRead | StatusUpdate


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


class PrepareVoice(Message, tag="media.prepare_voice"):
    """Conversation asks the media service to speak a reply and upload it as a voice note;
    the answer comes back as VoicePrepared or VoiceFailed, and the conversation sends it."""

    command_id: str  # the reply's send command id: the voice note and its text share it
    conversation_id: str
    phone_number_id: str
    seq: int
    text: str


class VoicePrepared(Message, tag="conversation.voice_prepared"):
    """The media service spoke the reply `seq` and uploaded it: the conversation sends it."""

    command_id: str
    conversation_id: str
    seq: int
    media_id: str  # the uploaded voice note, to send by id


class VoiceFailed(Message, tag="conversation.voice_failed"):
    """The reply `seq` could not be spoken: the conversation sends it as text."""

    command_id: str
    conversation_id: str
    seq: int
    reason: str  # why it could not be spoken: the reply goes as text
