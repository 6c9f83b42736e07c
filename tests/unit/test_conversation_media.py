"""Conversation and the media service: a media message is handed over, the customer's later
messages wait in the inbox, and the answer (MediaProcessed) continues them in order. Handler
level, with the in-memory store; the inbox is seeded by dedup's own code."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.conversation.handlers import (
    give_up_answer,
    on_business_message,
    on_media_processed,
    on_resume,
    on_voice,
)
from shared.broker.bus import Publish
from shared.schemas import (
    MarkRead,
    MediaProcessed,
    PrepareVoice,
    ProcessMedia,
    Resume,
    SendBusinessMessage,
    VoiceFailed,
    VoicePrepared,
)
from tests.unit.test_conversation_handlers import (
    Harness,
    change,
    ctx,
    from_fixture,
    handling,
    text,
)


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.deps.media_service = True
    return harness


def of(outputs: list[Publish], type_: type) -> list[Any]:
    return [p.message for p in outputs if isinstance(p.message, type_)]


def processed(request: ProcessMedia, **fields: Any) -> MediaProcessed:
    values: dict[str, Any] = {"stored": True, "sha256": "ab" * 32, "store_key": "k", **fields}
    return MediaProcessed(
        conversation_id=request.conversation_id,
        seq=request.seq,
        wamid=request.wamid,
        kind=request.kind,
        **values,
    )


async def answer(h: Harness, request: ProcessMedia, **fields: Any) -> list[Publish]:
    return await h.run(on_media_processed(processed(request, **fields), ctx(), h.deps))


async def voiced(h: Harness, prepare: PrepareVoice, media_id: str = "") -> list[Publish]:
    """The media service's answer to a voice reply: a voice note, or (no id) a failure."""
    answer: VoicePrepared | VoiceFailed = (
        VoicePrepared(
            command_id=prepare.command_id,
            conversation_id=prepare.conversation_id,
            seq=prepare.seq,
            media_id=media_id,
        )
        if media_id
        else VoiceFailed(
            command_id=prepare.command_id,
            conversation_id=prepare.conversation_id,
            seq=prepare.seq,
            reason="elevenlabs_500",
        )
    )
    return await h.run(on_voice(answer, ctx(), h.deps))


async def test_a_media_message_is_handed_to_the_media_service_and_later_ones_wait(
    h: Harness,
) -> None:
    msgs = await h.deliver(from_fixture("message:image", h.customer), text("and hello", h.customer))
    await h.handle(msgs[0])
    [request] = of(h.published, ProcessMedia)
    assert (request.seq, request.kind, request.wamid) == (0, "image", msgs[0].wamid)
    assert request.media == msgs[0].event.message["image"]
    assert [r.wamid for r in h.reads()] == [msgs[0].wamid]  # read while it is processed
    assert h.sends() == [] and h.responder.calls == []
    # The text arrives while the image is processed: it waits.
    assert await h.handle(msgs[1]) == []
    assert h.sends() == [] and await h.events() == [("MediaRequested", 0)]

    await answer(h, request)
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: [image]", "re: and hello"]
    assert [s.seq for s in h.sends()] == [0, 1]
    assert await h.events() == [
        ("MediaRequested", 0),
        ("CustomerWrote", 0),
        ("BotReplied", 0),
        ("CustomerWrote", 1),
        ("BotReplied", 1),
    ]
    assert len(h.reads()) == 2  # the image once (when requested), the text once


async def test_a_voice_note_s_transcript_is_the_turn(h: Harness) -> None:
    [msg] = await h.deliver(from_fixture("message:voice", h.customer))
    await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="what are your hours")
    [send] = h.sends()
    assert send.payload["text"]["body"] == "re: what are your hours"
    assert (await h.state()).turns[0].text == "what are your hours"


async def test_a_failed_file_is_still_answered(h: Harness) -> None:
    [msg] = await h.deliver(from_fixture("message:document", h.customer))
    await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, stored=False, failure="not_found", store_key="", sha256="")
    [send] = h.sends()
    assert "could not be received" in send.payload["text"]["body"]


async def test_media_messages_in_a_row_are_requested_one_at_a_time(h: Harness) -> None:
    msgs = await h.deliver(
        from_fixture("message:image", h.customer),
        from_fixture("message:voice", h.customer),
        text("done", h.customer),
    )
    for msg in msgs:
        await h.handle(msg)
    first = of(h.published, ProcessMedia)
    assert [r.seq for r in first] == [0]
    await answer(h, first[0])
    second = of(h.published, ProcessMedia)[1:]
    assert [r.seq for r in second] == [1]
    assert [s.seq for s in h.sends()] == [0]  # the text waits behind the voice note
    await answer(h, second[0], transcription="ok", transcript="spoken")
    assert [s.payload["text"]["body"] for s in h.sends()] == [
        "re: [image]",
        "re: spoken",
        "re: done",
    ]


async def test_redeliveries_publish_again_what_may_have_been_lost(h: Harness) -> None:
    msgs = await h.deliver(text("hi", h.customer), from_fixture("message:image", h.customer))
    # The second message is delivered first: catch-up handles "hi", then asks for the image.
    await h.handle(msgs[1])
    [request] = of(h.published, ProcessMedia)
    assert [s.seq for s in h.sends()] == [0]
    # A crash before the ack: the same message again publishes the request again.
    again = await h.handle(msgs[1])
    assert of(again, ProcessMedia) == [request]
    # The earlier message, delivered late, re-emits its reply and asks for nothing.
    late = await h.handle(msgs[0])
    assert [s.seq for s in h.sends(late)] == [0] and of(late, ProcessMedia) == []

    # The answer, twice: the second time re-emits the reply, records nothing new.
    await answer(h, request)
    events = await h.events()
    duplicate = await answer(h, request)
    assert [s.command_id for s in h.sends(duplicate)] == [h.sends()[-1].command_id]
    assert await h.events() == events


async def test_with_voice_replies_a_voice_note_is_answered_with_one_the_conversation_sends(
    h: Harness,
) -> None:
    h.deps.voice_replies = True
    msgs = await h.deliver(from_fixture("message:voice", h.customer), text("ok?", h.customer))
    for msg in msgs:
        await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    assert (prepare.seq, prepare.text) == (0, "re: spoken")
    # Nothing is sent while the voice note is prepared: the text waits behind it.
    assert h.sends() == []
    assert len(h.responder.calls) == 1
    await voiced(h, prepare, media_id="media-1")
    sends = h.sends()
    assert [s.seq for s in sends] == [0, 1]
    assert sends[0].payload == {"type": "audio", "audio": {"id": "media-1"}}
    assert sends[1].payload["text"]["body"] == "re: ok?"  # text goes straight to outbound
    # The voice note is sent under the reply's own command id: one send, whatever its form.
    assert sends[0].command_id == prepare.command_id
    assert await h.events() == [
        ("MediaRequested", 0),
        ("CustomerWrote", 0),
        ("BotReplied", 0),
        ("ReplySpoken", 0),
        ("CustomerWrote", 1),
        ("BotReplied", 1),
    ]


async def test_after_a_voice_reply_later_text_replies_do_not_detour(h: Harness) -> None:
    h.deps.voice_replies = True
    [voice] = await h.deliver(from_fixture("message:voice", h.customer))
    await h.handle(voice)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    await voiced(h, prepare, media_id="media-1")
    [later] = await h.deliver(text("thanks", h.customer))
    outputs = await h.handle(later)
    assert of(outputs, PrepareVoice) == [] and of(outputs, ProcessMedia) == []
    assert [s.payload["text"]["body"] for s in h.sends(outputs)] == ["re: thanks"]


async def test_a_voice_reply_that_cannot_be_spoken_goes_as_text_in_its_place(h: Harness) -> None:
    h.deps.voice_replies = True
    msgs = await h.deliver(from_fixture("message:voice", h.customer), text("ok?", h.customer))
    for msg in msgs:
        await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    await voiced(h, prepare)  # failed
    assert [(s.seq, s.payload["type"]) for s in h.sends()] == [(0, "text"), (1, "text")]
    assert h.sends()[0].payload["text"]["body"] == "re: spoken"
    # Redelivered: the same text again under the same id, nothing recorded twice.
    events = await h.events()
    again = await voiced(h, prepare)
    # (Its handling also sent the reply behind it: that goes out again too, same id.)
    assert [(s.seq, s.command_id) for s in h.sends(again)] == [
        (0, prepare.command_id),
        (1, h.sends()[1].command_id),
    ]
    assert await h.events() == events


async def test_a_voice_reply_in_flight_is_withdrawn_when_a_person_takes_over(
    h: Harness,
) -> None:
    """The bot never talks over a human: a takeover while the bot's voice reply is being
    spoken withdraws it; the agent's reply held behind it goes out, alone, and the
    customer's next message is not answered by the bot."""
    h.deps.voice_replies = True
    [msg] = await h.deliver(from_fixture("message:voice", h.customer))
    await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    await change(h, handling(h, "handoff", assignee="user_ada"))
    reply = SendBusinessMessage(
        message_id="msg_agent",
        business_id="default",
        conversation_id=h.cid,
        phone_number_id=prepare.phone_number_id,
        to=h.customer,
        message_type="text",
        payload={"type": "text", "text": {"body": "Ada here"}},
        author="agent",
    )
    held = await h.run(on_business_message(reply, ctx(), h.deps))
    assert h.sends(held) == []  # behind the voice reply still being made
    await voiced(h, prepare, media_id="media-1")
    assert [s.payload for s in h.sends()] == [{"type": "text", "text": {"body": "Ada here"}}]
    [later] = await h.deliver(text("hello?", h.customer))
    assert h.sends(await h.handle(later)) == []
    kinds = [t for t, _ in await h.events()]
    assert "ReplyWithdrawn" in kinds and "ReplySpoken" not in kinds
    # Redelivered, the voice note's answer sends nothing either.
    assert h.sends(await voiced(h, prepare, media_id="media-1")) == []


async def test_a_customer_redelivery_while_its_voice_reply_is_prepared_asks_again(
    h: Harness,
) -> None:
    h.deps.voice_replies = True
    [msg] = await h.deliver(from_fixture("message:voice", h.customer))
    await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    # The media answer again (a crash before its ack): the voice request is published again.
    again = await answer(h, request, transcription="ok", transcript="spoken")
    assert of(again, PrepareVoice) == [prepare]
    assert h.sends() == [] and len(h.responder.calls) == 1


async def test_an_unplayable_audio_file_with_voice_replies_is_answered_with_text(
    h: Harness,
) -> None:
    h.deps.voice_replies = True
    [msg] = await h.deliver(from_fixture("message:audio", h.customer))  # not a voice note
    await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="a song")
    assert of(h.published, PrepareVoice) == []
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: a song"]


async def test_a_dead_lettered_answer_fails_the_turn_and_wakes_the_messages_behind_it(
    h: Harness,
) -> None:
    msgs = await h.deliver(
        from_fixture("message:image", h.customer),
        text("one", h.customer),
        text("two", h.customer),
    )
    for msg in msgs:
        await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    published = await give_up_answer(processed(request), ctx(), "responder down", h.deps)
    assert (await h.events())[-1] == ("TurnFailed", 0)
    [resume] = of(published, Resume)
    assert resume.conversation_id == h.cid
    await h.run(on_resume(resume, ctx(), h.deps))
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: one", "re: two"]
    assert len(of(h.published, MarkRead)) == 3  # the image, then each text, as usual


async def test_a_dead_lettered_voice_answer_sends_the_text_and_goes_on(h: Harness) -> None:
    h.deps.voice_replies = True
    msgs = await h.deliver(from_fixture("message:voice", h.customer), text("ok?", h.customer))
    for msg in msgs:
        await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    broken = VoicePrepared(
        command_id=prepare.command_id, conversation_id=h.cid, seq=prepare.seq, media_id="x"
    )
    published = await give_up_answer(broken, ctx(), "boom", h.deps)
    [send] = h.sends(published)
    assert (send.seq, send.payload["text"]["body"]) == (0, "re: spoken")
    [resume] = of(published, Resume)
    await h.run(on_resume(resume, ctx(), h.deps))
    assert [s.seq for s in h.sends()] == [1]  # the text behind it, once


def business(h: Harness, body: str, message_id: str | None = None) -> SendBusinessMessage:
    return SendBusinessMessage(
        message_id=message_id or f"msg_{uuid.uuid4().hex}",
        business_id="default",
        conversation_id=h.cid,
        phone_number_id="100000000000001",
        to=h.customer,
        message_type="text",
        payload={"type": "text", "text": {"body": body}},
        actor="key_1",
    )


async def test_a_business_message_is_sent_in_order_and_the_bot_sees_it(h: Harness) -> None:
    [first] = await h.deliver(text("hello", h.customer))
    await h.handle(first)
    sent = business(h, "our shop opens at 9")
    outputs = await h.run(on_business_message(sent, ctx(), h.deps))
    [send] = h.sends(outputs)
    assert (send.command_id, send.payload["text"]["body"]) == (
        sent.message_id,
        "our shop opens at 9",
    )
    [nxt] = await h.deliver(text("thanks", h.customer))
    await h.handle(nxt)
    # The bot's history holds the business's message where it was said.
    assert h.responder.calls[-1][-3:] == [
        ("bot", "re: hello"),
        ("business", "our shop opens at 9"),
        ("customer", "thanks"),
    ]
    # Delivered again: sent again under the same id (outbound sends it once), recorded once.
    again = await h.run(on_business_message(sent, ctx(), h.deps))
    assert [s.command_id for s in h.sends(again)] == [sent.message_id]
    assert [t for t, _ in await h.events()].count("BusinessWrote") == 1


async def test_a_business_message_waits_behind_a_voice_reply_decided_before_it(
    h: Harness,
) -> None:
    h.deps.voice_replies = True
    [voice] = await h.deliver(from_fixture("message:voice", h.customer))
    await h.handle(voice)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    [prepare] = of(h.published, PrepareVoice)
    sent = business(h, "a person will call you")
    assert h.sends(await h.run(on_business_message(sent, ctx(), h.deps))) == []  # held
    await voiced(h, prepare, media_id="media-1")
    assert [(s.seq, s.command_id) for s in h.sends()][-2:] == [
        (0, prepare.command_id),
        (0, sent.message_id),
    ]
    assert [t for t, _ in await h.events()][-3:] == [
        "BusinessWrote",
        "ReplySpoken",
        "BusinessReleased",
    ]
