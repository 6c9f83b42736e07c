"""Answer customer messages strictly in inbox order, whatever order the broker delivers.

The inbox stream's version is the customer's sequence number. The conversation remembers the
last one it handled; a message further ahead makes it catch up from the event store first,
and one already handled makes it re-emit the reply it recorded (the publish may have been
lost in a crash between commit and ack). Outbound drops the re-emitted duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.conversation.domain import Conversation, bot_replied, record_inbound, turn_failed
from services.conversation.interpret import interpret
from services.conversation.responders import Responder
from shared.broker.bus import Context, Publish
from shared.eventstore import EventStore
from shared.schemas import CustomerMessage, MarkRead, SendMessage

log = logging.getLogger("conversation")


@dataclass
class Deps:
    store: EventStore
    responder: Responder
    publish: Callable[[list[Publish], Context], Awaitable[None]]


def conversation_stream(conversation_id: str) -> str:
    return f"conversation-{conversation_id}"


async def load(store: EventStore, conversation_id: str) -> Conversation:
    events = await store.read_stream(conversation_stream(conversation_id))
    return Conversation.from_events(conversation_id, events)


def reply_command(state: Conversation, seq: int, received: dict[str, Any]) -> Publish:
    reply = state.replies[seq]
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
    stream = conversation_stream(msg.conversation_id)
    state = await load(deps.store, msg.conversation_id)
    if msg.seq <= state.last_seq:
        return [reply_command(state, msg.seq, msg.event)] if msg.seq in state.replies else []

    for seq, received in await pending_messages(deps, state, msg):
        meaning = interpret(received.get("message") or {})
        events = record_inbound(state, seq, received, meaning)
        if meaning.answer:
            # Blue ticks and "typing..." while the reply is being written.
            await deps.publish(
                [
                    Publish(
                        "outbound",
                        msg.conversation_id,
                        MarkRead(
                            conversation_id=msg.conversation_id,
                            phone_number_id=received["phone_number_id"],
                            wamid=received["wamid"],
                        ),
                    )
                ],
                ctx,
            )
            for event in events:
                state.apply(event.type, event.data)
            reply = await deps.responder.reply(state)
            events.append(bot_replied(state, seq, reply.text, received["wamid"], reply.responder))
            state.apply(events[-1].type, events[-1].data)
        else:
            for event in events:
                state.apply(event.type, event.data)
        metadata = ctx.metadata()
        events = [type(e)(e.type, e.data, metadata, e.id) for e in events]
        appended = await deps.store.append(stream, events, expected_version=state.version)
        state.version = appended[-1].stream_version
        log.info(
            "turn handled",
            extra={
                "fields": {
                    "conversation": msg.conversation_id,
                    "seq": seq,
                    "kind": meaning.kind,
                    "answered": seq in state.replies,
                }
            },
        )
        if seq in state.replies:
            # Published per turn, right after its commit: a later turn failing must not hold
            # back the reply to an earlier one.
            await deps.publish([reply_command(state, seq, received)], ctx)
    return []


async def record_failure(msg: CustomerMessage, ctx: Context, error: str, deps: Deps) -> None:
    """The message is going to the dead letters: record the turn as failed so the
    conversation moves on to the customer's next message instead of blocking on this one."""
    state = await load(deps.store, msg.conversation_id)
    if msg.seq <= state.last_seq:
        return
    await deps.store.append(
        conversation_stream(msg.conversation_id),
        [turn_failed(state, state.last_seq + 1, error)],
        expected_version=state.version,
    )
