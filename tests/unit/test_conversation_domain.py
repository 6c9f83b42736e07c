"""The conversation's decide/evolve, with no broker and no database: the phases and what each
input decides in each of them."""

from __future__ import annotations

from typing import Any

import pytest

from services.conversation.domain import (
    READY,
    Answer,
    AwaitingMedia,
    AwaitingVoice,
    Conversation,
    GiveUp,
    MediaResult,
    OutOfOrder,
    Receive,
    VoiceResult,
    decide,
    event_id,
    evolve,
    fold,
)
from services.conversation.outputs import outputs, resend
from shared.events.conversation import (
    BotReplied,
    CustomerReacted,
    CustomerWrote,
    MediaRequested,
    ReplyNotSpoken,
    ReplySpoken,
    TurnFailed,
    UnsupportedReceived,
)
from shared.events.dedup import MessageReceived
from shared.eventstore import Event
from shared.schemas import MarkRead, MediaProcessed, PrepareVoice, ProcessMedia, SendMessage

PHONE, CUSTOMER = "100", "39555"
CID = f"{PHONE}.{CUSTOMER}"


def received(seq: int, message: dict[str, Any]) -> MessageReceived:
    return MessageReceived(
        conversation_id=CID,
        phone_number_id=PHONE,
        customer=CUSTOMER,
        customer_name="Ada",
        wamid=f"wamid.{seq}",
        type=str(message["type"]),
        timestamp="1700000000",
        message={"id": f"wamid.{seq}", **message},
        received_at=5.0,
    )


def text(seq: int, body: str) -> Receive:
    return Receive(seq, received(seq, {"type": "text", "text": {"body": body}}), "t", False)


def voice(seq: int) -> Receive:
    audio = {"type": "audio", "audio": {"id": "m1", "voice": True}}
    return Receive(seq, received(seq, audio), f"customer:{seq}", True)


def apply(state: Conversation, events: list[Event]) -> list[Event]:
    for event in events:
        evolve(state, event)
    return events


def answered(state: Conversation, seq: int, speak: bool = False) -> list[Event]:
    return apply(state, decide(state, Answer(seq, f"re {seq}", "rules", f"wamid.{seq}", speak)))


def test_a_text_makes_a_turn_and_its_answer_a_reply_sent_to_outbound() -> None:
    state = Conversation(CID)
    [wrote] = apply(state, decide(state, text(0, "hello")))
    assert isinstance(wrote, CustomerWrote) and wrote.text == "hello"
    assert (state.phase, state.last_seq, state.customer_name) == (READY, 0, "Ada")
    [reply] = answered(state, 0)
    assert isinstance(reply, BotReplied) and not reply.speak
    [send] = outputs(state, reply)
    assert isinstance(send.message, SendMessage) and send.stage == "outbound"
    assert (send.message.to, send.message.phone_number_id) == (CUSTOMER, PHONE)
    assert send.message.payload["text"]["body"] == "re 0"
    assert resend(state, 0) == [send]  # a redelivery publishes the same command again


def test_messages_are_taken_in_order_only() -> None:
    state = Conversation(CID)
    with pytest.raises(OutOfOrder):
        decide(state, text(1, "too early"))
    apply(state, decide(state, text(0, "first")))
    with pytest.raises(OutOfOrder):
        decide(state, text(0, "again"))


def test_a_media_message_waits_for_the_media_service_and_its_result_makes_the_turn() -> None:
    state = Conversation(CID)
    [request] = apply(state, decide(state, voice(0)))
    assert isinstance(request, MediaRequested) and request.voice
    assert state.phase == AwaitingMedia(0)
    kinds = [type(p.message) for p in outputs(state, request)]
    assert kinds == [MarkRead, ProcessMedia]
    with pytest.raises(OutOfOrder):
        decide(state, text(1, "behind the file"))
    # An answer for another seq decides nothing.
    other = MediaProcessed(conversation_id=CID, seq=7, wamid="w", kind="audio", stored=True)
    assert decide(state, MediaResult(other)) == []
    result = MediaProcessed(
        conversation_id=CID,
        seq=0,
        wamid="wamid.0",
        kind="audio",
        stored=True,
        transcription="ok",
        transcript="book a table",
    )
    [turn] = apply(state, decide(state, MediaResult(result)))
    assert isinstance(turn, CustomerWrote) and turn.text == "book a table"
    assert state.phase == READY


def test_a_spoken_reply_waits_for_its_voice_note_then_goes_out_by_id() -> None:
    state = Conversation(CID)
    apply(state, decide(state, text(0, "hi")))
    [reply] = answered(state, 0, speak=True)
    assert state.phase == AwaitingVoice(0)
    [prepare] = outputs(state, reply)
    assert isinstance(prepare.message, PrepareVoice) and prepare.stage == "media"
    assert resend(state, 0) == [prepare]
    with pytest.raises(OutOfOrder):
        decide(state, text(1, "behind the voice"))
    assert decide(state, VoiceResult(5, "x", media_id="m")) == []
    [spoken] = apply(state, decide(state, VoiceResult(0, prepare.message.command_id, "m9")))
    assert isinstance(spoken, ReplySpoken) and state.phase == READY
    [send] = outputs(state, spoken)
    assert isinstance(send.message, SendMessage)
    assert send.message.payload == {"type": "audio", "audio": {"id": "m9"}}
    assert send.message.command_id == prepare.message.command_id
    assert resend(state, 0) == [send]
    assert decide(state, VoiceResult(0, "x", media_id="again")) == []  # decided already


def test_a_voice_note_that_could_not_be_made_is_sent_as_the_text() -> None:
    state = Conversation(CID)
    apply(state, decide(state, text(0, "hi")))
    answered(state, 0, speak=True)
    [fell] = apply(state, decide(state, VoiceResult(0, "c", reason="elevenlabs_500")))
    assert isinstance(fell, ReplyNotSpoken) and state.phase == READY
    [send] = outputs(state, fell)
    assert isinstance(send.message, SendMessage)
    assert send.message.payload["text"]["body"] == "re 0"


def test_giving_up_what_was_awaited_moves_the_conversation_on() -> None:
    state = Conversation(CID)
    apply(state, decide(state, voice(0)))
    [failed] = apply(state, decide(state, GiveUp(0, "dead-lettered")))
    assert isinstance(failed, TurnFailed) and state.phase == READY
    apply(state, decide(state, text(1, "next")))
    answered(state, 1, speak=True)
    [instead] = apply(state, decide(state, GiveUp(1, "dead-lettered")))
    assert isinstance(instead, ReplyNotSpoken) and state.phase == READY
    assert decide(state, GiveUp(0, "late")) == []  # handled: nothing to give up


def test_reactions_and_unsupported_messages_are_recorded_without_an_answer() -> None:
    state = Conversation(CID)
    apply(state, decide(state, text(0, "hello")))
    answered(state, 0)
    react = {"type": "reaction", "reaction": {"message_id": "wamid.0", "emoji": "👍"}}
    [reaction] = apply(state, decide(state, Receive(1, received(1, react), "t", False)))
    assert isinstance(reaction, CustomerReacted)
    assert state.turns[0].reactions == ["👍"]
    assert outputs(state, reaction) == []
    odd = Receive(2, received(2, {"type": "unsupported"}), "t", False)
    [unsupported] = apply(state, decide(state, odd))
    assert isinstance(unsupported, UnsupportedReceived) and state.last_seq == 2


def test_the_fold_of_the_events_is_the_state_and_ids_are_stable() -> None:
    state = Conversation(CID)
    history: list[Event] = []
    history += apply(state, decide(state, text(0, "hi")))
    history += answered(state, 0, speak=True)
    history += apply(state, decide(state, VoiceResult(0, "c", media_id="m")))
    again = fold(CID, list(enumerate(history)))
    assert (again.phase, again.last_seq, again.replies, again.spoken) == (
        state.phase,
        state.last_seq,
        state.replies,
        state.spoken,
    )
    assert again.version == 2
    ids = [event_id(CID, e) for e in history]
    assert ids == [event_id(CID, e) for e in history] and len(set(ids)) == 3


def test_an_address_from_before_it_was_recorded_comes_from_the_conversation_id() -> None:
    state = Conversation(CID)
    apply(state, [CustomerWrote(seq=0, text="old row")])
    assert (state.phone_number_id, state.customer) == (PHONE, CUSTOMER)
