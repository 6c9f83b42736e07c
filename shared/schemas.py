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
