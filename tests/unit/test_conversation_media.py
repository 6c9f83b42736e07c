"""Conversation and the media service: a media message is handed over, the customer's later
messages wait in the inbox, and the answer (MediaProcessed) continues them in order. Handler
level, with the in-memory store; the inbox is seeded by dedup's own code."""

from __future__ import annotations

from typing import Any

import pytest

from services.conversation.media_handlers import handle_media_processed, record_media_failure
from shared.broker.bus import Publish
from shared.schemas import (
    CustomerMessage,
    DeliverReply,
    MarkRead,
    MediaProcessed,
    ProcessMedia,
)
from tests.unit.test_conversation_handlers import Harness, ctx, from_fixture, text


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
    return await handle_media_processed(processed(request, **fields), ctx(), h.deps)


async def test_a_media_message_is_handed_to_the_media_service_and_later_ones_wait(
    h: Harness,
) -> None:
    msgs = await h.deliver(from_fixture("message:image", h.customer), text("and hello", h.customer))
    assert await h.handle(msgs[0]) == []
    [request] = of(h.published, ProcessMedia)
    assert (request.seq, request.kind, request.wamid) == (0, "image", msgs[0].wamid)
    assert request.media == msgs[0].event["message"]["image"]
    assert [r.wamid for r in h.reads()] == [msgs[0].wamid]  # read while it is processed
    assert h.sends() == [] and h.responder.calls == []
    # The text arrives while the image is processed: it waits.
    assert await h.handle(msgs[1]) == []
    assert h.sends() == [] and await h.events() == [("MediaRequested", 0)]

    assert await answer(h, request) == []
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


async def test_with_voice_replies_a_voice_note_is_answered_through_the_media_service(
    h: Harness,
) -> None:
    h.deps.voice_replies = True
    msgs = await h.deliver(from_fixture("message:voice", h.customer), text("ok?", h.customer))
    for msg in msgs:
        await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="spoken")
    replies = of(h.published, DeliverReply)
    assert [(r.seq, r.voice, r.text) for r in replies] == [
        (0, True, "re: spoken"),
        (1, False, "re: ok?"),  # behind the voice reply, on the same path
    ]
    assert h.sends() == []
    # Each reply keeps its own command id: outbound sends it once, voice or text.
    state = await h.state()
    assert [r.command_id for r in replies] == [
        state.replies[0]["command_id"],
        state.replies[1]["command_id"],
    ]


async def test_an_unplayable_audio_file_with_voice_replies_is_answered_with_text(
    h: Harness,
) -> None:
    h.deps.voice_replies = True
    [msg] = await h.deliver(from_fixture("message:audio", h.customer))  # not a voice note
    await h.handle(msg)
    [request] = of(h.published, ProcessMedia)
    await answer(h, request, transcription="ok", transcript="a song")
    assert of(h.published, DeliverReply) == []
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
    await record_media_failure(processed(request), ctx(), "responder down", h.deps)
    assert (await h.events())[-1] == ("TurnFailed", 0)
    [wake] = of(h.published, CustomerMessage)
    assert wake.seq == 2
    await h.handle(wake)
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: one", "re: two"]
    assert of(h.published, MarkRead)  # and the texts were read-marked as usual
