"""Answer customer messages strictly in inbox order, whatever order the broker delivers.

The inbox stream's version is the customer's sequence number. The conversation remembers the
last one it handled; a message further ahead makes it catch up from the event store first,
and one already handled makes it re-emit the reply it recorded (the publish may have been
lost in a crash between commit and ack). Outbound drops the re-emitted duplicate.

A media message is handed to the media service (`media.py`): the customer's later messages
wait in the inbox until its answer, MediaProcessed (`media_handlers.py`), continues them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.conversation import media
from services.conversation.domain import Conversation, bot_replied, record_inbound, turn_failed
from services.conversation.interpret import interpret
from services.conversation.responders import Responder
from services.conversation.states import (
    Conversations,
    StaleConversation,
    conversation_stream,
    load,
)
from shared.broker.bus import Context, Publish
from shared.eventstore import Appended, EventStore, NewEvent
from shared.schemas import CustomerMessage, DeliverReply, MarkRead, SendMessage

log = logging.getLogger("conversation")


@dataclass
class Deps:
    store: EventStore
    responder: Responder
    publish: Callable[[list[Publish], Context], Awaitable[None]]
    # Media messages go to the media service (off: answered from their description alone).
    media_service: bool = False
    # A voice note is answered with a voice note (ElevenLabs is configured).
    voice_replies: bool = False
    conversations: Conversations = field(init=False)

    def __post_init__(self) -> None:
        self.conversations = Conversations(self.store)


def reply_command(state: Conversation, seq: int, received: dict[str, Any]) -> Publish:
    reply = state.replies[seq]
    if reply.get("delivery") == "media":
        return Publish(
            "media",
            state.conversation_id,
            DeliverReply(
                command_id=reply["command_id"],
                conversation_id=state.conversation_id,
                phone_number_id=received["phone_number_id"],
                to=received["customer"],
                text=reply["text"],
                seq=seq,
                voice=bool(reply.get("voice")),
                received_at=float(received.get("received_at") or 0.0),
            ),
        )
    return Publish(
        "outbound",
        state.conversation_id,
        SendMessage(
            command_id=reply["command_id"],
            conversation_id=state.conversation_id,
            phone_number_id=received["phone_number_id"],
            to=received["customer"],
            payload={"type": "text", "text": {"body": reply["text"], "preview_url": False}},
            seq=seq,
            received_at=float(received.get("received_at") or 0.0),
        ),
    )


async def pending_messages(
    deps: Deps, state: Conversation, msg: CustomerMessage
) -> list[tuple[int, dict[str, Any]]]:
    if msg.seq == state.last_seq + 1:
        return [(msg.seq, msg.event)]
    inbox = await deps.store.read_stream(f"inbox-{msg.conversation_id}", state.last_seq + 1)
    return [(e.version, e.data) for e in inbox if e.version <= msg.seq]


async def handle_customer_message(msg: CustomerMessage, ctx: Context, deps: Deps) -> list[Publish]:
    return await deps.conversations.run(
        msg.conversation_id, lambda state: _customer_message(msg, ctx, deps, state)
    )


async def _customer_message(
    msg: CustomerMessage, ctx: Context, deps: Deps, state: Conversation
) -> list[Publish]:
    if state.awaiting_media is not None and msg.seq >= state.awaiting_media:
        # It waits in the inbox: the awaited file's MediaProcessed goes on with it, in order.
        if msg.seq == state.awaiting_media:
            return [media.process_media(state, msg.seq)]
        return media.resend(state, f"customer:{msg.seq}")
    if msg.seq <= state.last_seq:
        return [reply_command(state, msg.seq, msg.event)] if msg.seq in state.replies else []
    pending = await pending_messages(deps, state, msg)
    await handle_pending(deps, state, pending, ctx, f"customer:{msg.seq}")
    return []


async def handle_pending(
    deps: Deps,
    state: Conversation,
    pending: list[tuple[int, dict[str, Any]]],
    ctx: Context,
    trigger: str,
) -> None:
    """Handle inbox messages in order, stopping at a media message: the media service's
    answer (MediaProcessed) goes on from there."""
    for seq, received in pending:
        if deps.media_service and media.is_media(received):
            await request_media(deps, state, seq, received, ctx, trigger)
            return
        meaning = interpret(received.get("message") or {})
        events = record_inbound(state, seq, received, meaning)
        await handle_turn(deps, state, seq, received, events, meaning.answer, meaning.kind, ctx)


def stale_if_duplicate(appended: list[Appended]) -> None:
    """Events already stored: another run recorded this turn, so the state was behind."""
    if any(a.duplicate for a in appended):
        raise StaleConversation("the turn was already recorded")


def mark_read(state: Conversation, received: dict[str, Any]) -> Publish:
    return Publish(
        "outbound",
        state.conversation_id,
        MarkRead(
            conversation_id=state.conversation_id,
            phone_number_id=received["phone_number_id"],
            wamid=received["wamid"],
        ),
    )


async def handle_turn(
    deps: Deps,
    state: Conversation,
    seq: int,
    received: dict[str, Any],
    events: list[NewEvent],
    answer: bool,
    kind: str,
    ctx: Context,
    *,
    read_mark: bool = True,
    voice: bool = False,
) -> None:
    """Record one customer message (and the reply, when it is answered), then publish."""
    stream = conversation_stream(state.conversation_id)
    if answer:
        if read_mark:
            # Blue ticks and "typing..." while the reply is being written.
            await deps.publish([mark_read(state, received)], ctx)
        for event in events:
            state.apply(event.type, event.data)
        reply = await deps.responder.reply(state)
        events.append(
            bot_replied(state, seq, reply.text, received["wamid"], reply.responder, voice=voice)
        )
        state.apply(events[-1].type, events[-1].data)
    else:
        for event in events:
            state.apply(event.type, event.data)
    metadata = ctx.metadata()
    events = [type(e)(e.type, e.data, metadata, e.id) for e in events]
    appended = await deps.store.append(stream, events, expected_version=state.version)
    stale_if_duplicate(appended)
    state.version = appended[-1].stream_version
    log.info(
        "turn handled",
        extra={
            "fields": {
                "conversation": state.conversation_id,
                "seq": seq,
                "kind": kind,
                "answered": seq in state.replies,
            }
        },
    )
    if seq in state.replies:
        # Published per turn, right after its commit: a later turn failing must not hold
        # back the reply to an earlier one.
        await deps.publish([reply_command(state, seq, received)], ctx)


async def request_media(
    deps: Deps,
    state: Conversation,
    seq: int,
    received: dict[str, Any],
    ctx: Context,
    trigger: str,
) -> None:
    """Ask the media service for this message's file; the customer sees it read meanwhile."""
    await deps.publish([mark_read(state, received)], ctx)
    event = media.media_requested(state, seq, received, trigger)
    appended = await deps.store.append(
        conversation_stream(state.conversation_id),
        [NewEvent(event.type, event.data, ctx.metadata(), event.id)],
        expected_version=state.version,
    )
    stale_if_duplicate(appended)
    state.apply(event.type, event.data)
    state.version = appended[-1].stream_version
    log.info(
        "media requested",
        extra={"fields": {"conversation": state.conversation_id, "seq": seq}},
    )
    await deps.publish([media.process_media(state, seq)], ctx)


async def record_failure(msg: CustomerMessage, ctx: Context, error: str, deps: Deps) -> None:
    """The message is going to the dead letters: record the turn as failed so the
    conversation moves on to the customer's next message instead of blocking on this one."""
    deps.conversations.forget(msg.conversation_id)
    state = await load(deps.store, msg.conversation_id)
    if msg.seq <= state.last_seq:
        return
    await deps.store.append(
        conversation_stream(msg.conversation_id),
        [turn_failed(state, state.last_seq + 1, error)],
        expected_version=state.version,
    )
