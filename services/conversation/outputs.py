"""What the conversation publishes for the events it records: the commands they imply.

Computed from the state after the events, so a redelivered input can publish again what
its first handling published (`resend`): outbound and media recognise a command they have
already carried out by its id.
"""

from __future__ import annotations

from typing import Any

from services.conversation.domain import AwaitingMedia, AwaitingVoice, Conversation, recipient
from shared.broker.bus import Publish
from shared.crypto.erased import sendable
from shared.events.conversation import (
    BotReplied,
    BusinessReleased,
    BusinessWrote,
    MediaRequested,
    ReplyNotSpoken,
    ReplySpoken,
    ReplyWithdrawn,
)
from shared.eventstore import Event
from shared.schemas import MarkRead, PrepareVoice, ProcessMedia, SendMessage


def outputs(state: Conversation, event: Event, read: str = "") -> list[Publish]:
    """`read`: a customer message to mark read with its reply (the first one) when there is
    one among these events."""
    match event:
        case MediaRequested():
            # The customer sees the file read while it is processed.
            return [mark_read(state, event.wamid), _process(state, event)]
        case BotReplied(speak=True):
            return [_prepare_voice(state, event)]
        case BotReplied():
            reading = read if read and event.in_reply_to == read and event.index == 0 else ""
            return [_send(state, event, _body(event), reading)]
        case ReplySpoken():
            return [_send(state, state.replies[event.seq], _audio(event.media_id))]
        case ReplyNotSpoken():
            reply = state.replies[event.seq]
            return [_send(state, reply, _body(reply))]
        case BusinessWrote(held=False):
            return [_send_business(state, event)]
        case ReplyWithdrawn():
            return []  # a person has the conversation: the bot's reply is not sent
        case BusinessReleased():
            return [_send_business(state, state.business[m]) for m in event.message_ids]
    return []


def resend_business(state: Conversation, message_id: str) -> list[Publish]:
    """A business message delivered again: sent again unless it is held (outbound sends it
    once by its id)."""
    event = state.business.get(message_id)
    if event is None or message_id in state.held:
        return []
    return [_send_business(state, event)]


def _send_business(state: Conversation, event: BusinessWrote) -> Publish:
    return _sending(state, event.message_id, event.seq, event.payload, to=event.to)


def resend(state: Conversation, seq: int) -> list[Publish]:
    """What handling the customer message `seq` has published so far, by the state."""
    reply = state.replies.get(seq)
    if reply is not None:
        if seq in state.spoken:
            return outputs(state, state.spoken[seq])
        if state.phase == AwaitingVoice(seq):
            return [_prepare_voice(state, reply)]
        if reply.speak:
            return []
        return [_send(state, r, _body(r)) for r in (reply, *state.more_replies.get(seq, ()))]
    if state.phase == AwaitingMedia(seq):
        return [_process(state, state.media_requests[seq])]
    return []


def mark_read(state: Conversation, wamid: str) -> Publish:
    """Blue ticks, and "typing..." until the reply (or 25 s)."""
    return Publish(
        "outbound",
        state.conversation_id,
        MarkRead(
            conversation_id=state.conversation_id,
            phone_number_id=state.phone_number_id,
            wamid=wamid,
        ),
    )


def _process(state: Conversation, request: MediaRequested) -> Publish:
    return Publish(
        "media",
        state.conversation_id,
        ProcessMedia(
            conversation_id=state.conversation_id,
            seq=request.seq,
            wamid=request.wamid,
            phone_number_id=request.phone_number_id,
            kind=request.kind,
            media=request.media,
            received_at=request.received_at,
        ),
    )


def _prepare_voice(state: Conversation, reply: BotReplied) -> Publish:
    return Publish(
        "media",
        state.conversation_id,
        PrepareVoice(
            command_id=reply.command_id,
            conversation_id=state.conversation_id,
            phone_number_id=state.phone_number_id,
            seq=reply.seq,
            text=reply.text,
        ),
    )


def _send(
    state: Conversation, reply: BotReplied, payload: dict[str, Any], read: str = ""
) -> Publish:
    return _sending(state, reply.command_id, reply.seq, payload, reply.received_at, read=read)


def _sending(
    state: Conversation,
    command_id: str,
    seq: int,
    payload: dict[str, Any],
    received_at: float = 0.0,
    to: str = "",
    read: str = "",
) -> Publish:
    """A message to the customer, through outbound, sent once by `command_id`."""
    return Publish(
        "outbound",
        state.conversation_id,
        SendMessage(
            command_id=command_id,
            conversation_id=state.conversation_id,
            phone_number_id=state.phone_number_id,
            to=sendable(to) or recipient(state),
            payload=payload,
            seq=seq,
            received_at=received_at,
            read=read,
        ),
    )


def _body(reply: BotReplied) -> dict[str, Any]:
    """The Cloud API body of a reply: its own (buttons, a list, a template), or its text."""
    return reply.payload if reply.payload is not None else _text(reply.text)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text, "preview_url": False}}


def _audio(media_id: str) -> dict[str, Any]:
    return {"type": "audio", "audio": {"id": media_id}}
