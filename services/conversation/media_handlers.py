"""The media service's answer (MediaProcessed): record the customer's media turn, reply, then
go on with the customer's messages that waited behind it, in inbox order."""

from __future__ import annotations

from services.conversation import media
from services.conversation.domain import Conversation, turn_failed
from services.conversation.handlers import (
    Deps,
    conversation_stream,
    handle_pending,
    handle_turn,
    reply_command,
)
from services.conversation.states import load
from shared.broker.bus import Context, Publish
from shared.eventstore import NewEvent, event_id_for
from shared.schemas import CustomerMessage, MediaProcessed


def inbox_stream(conversation_id: str) -> str:
    return f"inbox-{conversation_id}"


async def handle_media_processed(msg: MediaProcessed, ctx: Context, deps: Deps) -> list[Publish]:
    return await deps.conversations.run(
        msg.conversation_id, lambda state: _media_processed(msg, ctx, deps, state)
    )


async def _media_processed(
    msg: MediaProcessed, ctx: Context, deps: Deps, state: Conversation
) -> list[Publish]:
    trigger = f"media:{msg.seq}"
    if state.awaiting_media != msg.seq:
        if msg.seq not in state.media_requests or msg.seq > state.last_seq:
            return []
        # Handled already: a redelivery (say a crash before the ack). Publish again what its
        # handling published: the replies from this seq on, and a media request it made.
        inbox = await deps.store.read_stream(inbox_stream(msg.conversation_id), msg.seq)
        outputs = [
            reply_command(state, e.version, e.data)
            for e in inbox
            if e.version <= state.last_seq and e.version in state.replies
        ]
        return outputs + media.resend(state, trigger)

    inbox = await deps.store.read_stream(inbox_stream(msg.conversation_id), msg.seq)
    received = inbox[0].data
    request = state.media_requests[msg.seq]
    text, detail = media.media_turn(request, msg)
    wrote = NewEvent(
        "CustomerWrote",
        {
            "seq": msg.seq,
            "wamid": received["wamid"],
            "type": received.get("type"),
            "customer_name": received.get("customer_name", ""),
            "timestamp": received.get("timestamp"),
            "text": text,
            "detail": detail,
        },
        id=event_id_for("customer-wrote", state.conversation_id, str(msg.seq)),
    )
    voice = deps.voice_replies and bool(request.get("voice"))
    # Read-marked when the file was requested; not again.
    await handle_turn(
        deps, state, msg.seq, received, [wrote], True, "media", ctx, read_mark=False, voice=voice
    )
    later = [(e.version, e.data) for e in inbox[1:]]
    await handle_pending(deps, state, later, ctx, trigger)
    return []


async def record_media_failure(msg: MediaProcessed, ctx: Context, error: str, deps: Deps) -> None:
    """The answer could not be handled (it is going to the dead letters): record the turn as
    failed, and hand the customer's newest message to the usual catch-up, so the ones that
    waited behind the file are answered rather than left until the customer writes again."""
    deps.conversations.forget(msg.conversation_id)
    state = await load(deps.store, msg.conversation_id)
    if state.awaiting_media != msg.seq:
        return
    await deps.store.append(
        conversation_stream(msg.conversation_id),
        [turn_failed(state, msg.seq, error)],
        expected_version=state.version,
    )
    later = await deps.store.read_stream(inbox_stream(msg.conversation_id), msg.seq + 1)
    if later:
        newest = later[-1]
        await deps.publish(
            [
                Publish(
                    "conversation",
                    msg.conversation_id,
                    CustomerMessage(
                        conversation_id=msg.conversation_id,
                        seq=newest.version,
                        wamid=str(newest.data.get("wamid", "")),
                        event=newest.data,
                    ),
                )
            ],
            ctx,
        )
