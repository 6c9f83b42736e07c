"""Voice replies (ElevenLabs configured) through the real processes: a customer who speaks
hears the answer, in order with the texts around it, and gets it as text when speech
synthesis fails; never both.

This module runs its own stack (own vhost and database) with ELEVENLABS_API_KEY set: the
session's shared stack answers voice notes with text, as a deployment without ElevenLabs does.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest

from services.media.domain import is_ogg_opus
from shared.events.media import voice_stream
from shared.payloads import messages_payload, text_message
from tests.e2e.api_support import make_tenant
from tests.e2e.harness import Running, new_customer, own_stack
from tests.support.fakes import Fault, wait_for
from tests.support.media_fakes import (
    FakeElevenLabs,
    FakeGraphMedia,
    FakeOpenAIAudio,
    audio_sends,
    spoken_text,
)

PHONE = "100000000000001"
TIMEOUT = 45
BREAKER_RESET = 2.0  # the harness's BREAKER_RESET_SECONDS


@pytest.fixture(scope="module")
def voice_bot() -> Iterator[Running]:
    with own_stack(ELEVENLABS_API_KEY="test-eleven-key") as running:
        yield running


@pytest.fixture
def bot(voice_bot: Running) -> Iterator[Running]:
    yield voice_bot
    for fake in (voice_bot.graph, voice_bot.openai, eleven(voice_bot)):
        fake.clear_faults()
        fake.latency = 0.0


def eleven(bot: Running) -> FakeElevenLabs:
    assert bot.elevenlabs is not None
    return bot.elevenlabs


def send_voice_note(bot: Running, customer: str, says: str) -> str:
    content = os.urandom(3000)
    fake = cast(FakeGraphMedia, bot.graph).add_media(content, "audio/ogg; codecs=opus")
    cast(FakeOpenAIAudio, bot.openai).say(content, says)
    message = {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "audio",
        "audio": {"id": fake.media_id, "mime_type": "audio/ogg; codecs=opus", "voice": True},
    }
    assert bot.post(messages_payload([message], customer, PHONE))[0] == 200
    return str(message["id"])


def sends(bot: Running, customer: str) -> list[dict[str, Any]]:
    return [s["body"] for s in bot.graph.sent_to(customer)]


def bot_replies(bot: Running, customer: str) -> list[dict[str, Any]]:
    return [
        d
        for t, d in bot.events("conversation-" + bot.conversation_id(PHONE, customer))
        if t == "BotReplied"
    ]


def heard(bot: Running, body: dict[str, Any]) -> str | None:
    """What an audio message says: the text inside the uploaded Ogg file it points to."""
    upload = cast(FakeGraphMedia, bot.graph).upload(body["audio"]["id"])
    assert upload["type"] == "audio/ogg" and upload["content_type"] == "audio/ogg"
    assert is_ogg_opus(upload["data"])
    return spoken_text(upload["data"])


def test_a_voice_note_is_answered_with_a_voice_note(bot: Running) -> None:
    customer = new_customer()
    send_voice_note(bot, customer, "what time do you open")
    wait_for(lambda: audio_sends(bot.graph, customer), timeout=TIMEOUT, message="a voice reply")
    # The conversation waits for the voice note before it handles the customer's next
    # message, so the fence's reply comes after it, and after any text sent as well.
    fence = bot.fence(customer)
    bodies = sends(bot, customer)
    assert [b["type"] for b in bodies] == ["audio", "text"]  # the voice note's, the fence's
    body, fence_body = bodies
    assert fence_body["text"]["body"] == fence
    [reply, fenced] = bot_replies(bot, customer)
    assert reply["text"] == "echo: what time do you open"
    assert reply["speak"] is True
    assert (fenced["text"], fenced["speak"]) == (fence, False)  # text goes straight out
    assert heard(bot, body) == reply["text"]  # the voice says what BotReplied recorded
    [synthesis] = [s for s in eleven(bot).syntheses if s.text == reply["text"]]
    assert synthesis.output_format == "opus_48000_64"
    assert synthesis.model_id == "eleven_multilingual_v2"
    [(kind, prepared)] = bot.events(voice_stream(reply["command_id"]))
    assert kind == "VoiceReplyPrepared" and prepared["media_id"] == body["audio"]["id"]
    assert (bot.media_dir / prepared["store_key"]).is_file()  # what the bot said is kept


def test_a_text_is_still_answered_with_text(bot: Running) -> None:
    customer = new_customer()
    assert bot.post(text_message("hello", customer=customer))[0] == 200
    wait_for(lambda: bot.graph.texts_to(customer), timeout=TIMEOUT)
    [reply] = bot_replies(bot, customer)
    assert reply["speak"] is False  # straight to outbound
    assert bot.graph.texts_to(customer) == ["echo: hello"]


def test_replies_keep_their_order_when_the_voice_is_slow(bot: Running) -> None:
    customer = new_customer()
    # Speech takes a while; the texts after the voice note must not overtake it.
    eleven(bot).inject(Fault(status=None, delay=2.0))
    send_voice_note(bot, customer, "first")
    assert bot.post(text_message("second", customer=customer))[0] == 200
    assert bot.post(text_message("third", customer=customer))[0] == 200
    wait_for(lambda: len(sends(bot, customer)) >= 3, timeout=TIMEOUT, message="three replies")
    bodies = sends(bot, customer)
    assert [b["type"] for b in bodies] == ["audio", "text", "text"]
    assert heard(bot, bodies[0]) == "echo: first"
    assert [b["text"]["body"] for b in bodies[1:]] == ["echo: second", "echo: third"]


def test_speech_failing_falls_back_to_text_then_the_breaker_then_recovers(bot: Running) -> None:
    customer = new_customer()
    eleven(bot).fail_always(Fault(status=500))
    before = bot.metric("media", "media_voice_fallbacks_total")

    send_voice_note(bot, customer, "are you there")
    wait_for(lambda: bot.graph.texts_to(customer), timeout=TIMEOUT, message="a text fallback")
    [reply] = bot_replies(bot, customer)
    [(kind, fell_back)] = bot.events(voice_stream(reply["command_id"]))
    assert kind == "VoiceReplyFellBack" and fell_back["reason"] == "elevenlabs_500"
    assert bot.graph.texts_to(customer) == [reply["text"]] == ["echo: are you there"]
    assert bot.metric("media", "media_voice_fallbacks_total", reason="elevenlabs_500") >= 1

    # More failures open the breaker: the next reply goes out as text without waiting.
    send_voice_note(bot, customer, "hello?")
    wait_for(lambda: len(bot.graph.texts_to(customer)) == 2, timeout=TIMEOUT)
    second = bot_replies(bot, customer)[1]
    [(_, fell_back)] = bot.events(voice_stream(second["command_id"]))
    assert fell_back["reason"] == "circuit_open"
    assert bot.metric("media", "media_voice_fallbacks_total") >= before + 2
    assert audio_sends(bot.graph, customer) == []

    # ElevenLabs is back: once the breaker lets a call through, the customer hears replies.
    eleven(bot).clear_faults()
    time.sleep(BREAKER_RESET + 0.5)
    send_voice_note(bot, customer, "now?")
    wait_for(lambda: audio_sends(bot.graph, customer), timeout=TIMEOUT, message="voice again")
    fence = bot.fence(customer)
    bodies = sends(bot, customer)
    assert [b["type"] for b in bodies] == ["text", "text", "audio", "text"]
    assert heard(bot, bodies[2]) == "echo: now?"
    assert bodies[3]["text"]["body"] == fence


def test_a_person_taking_over_while_the_voice_reply_is_made_silences_it(bot: Running) -> None:
    """The bot never talks over a human: the voice reply decided before the takeover is
    withdrawn when its audio is ready; the agent's reply, held behind it, goes out alone."""
    tenant = make_tenant(bot, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    eleven(bot).inject(Fault(status=None, delay=3.0))  # speech takes a while
    content = os.urandom(3000)
    fake = cast(FakeGraphMedia, bot.graph).add_media(content, "audio/ogg; codecs=opus")
    cast(FakeOpenAIAudio, bot.openai).say(content, "can I talk to a person")
    message = {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "audio",
        "audio": {"id": fake.media_id, "mime_type": "audio/ogg; codecs=opus", "voice": True},
    }
    payload = messages_payload([message], customer, number, waba_id=tenant.numbers[number])
    assert bot.post(payload)[0] == 200
    wait_for(
        lambda: any(t == "BotReplied" and d["speak"] for t, d in bot.events(f"conversation-{cid}")),
        timeout=TIMEOUT,
        message="the bot's voice reply decided",
    )
    # The webhook reaches the api's read models in their own time (the conversation is not
    # one of the api's writes): the agent sees it in the inbox before taking it.
    wait_for(
        lambda: tenant.call("GET", f"/v1/conversations/{cid}", role="agent").status == 200,
        timeout=TIMEOUT,
        message="the conversation in the api's read model",
    )
    taken = tenant.call("POST", f"/v1/conversations/{cid}/handoff", {}, role="agent")
    assert taken.status == 200 and taken.json["state"] == "waiting"
    body = {"phone_number_id": number, "to": customer, "type": "text", "text": {"body": "Bo here"}}
    assert tenant.call("POST", "/v1/messages", body, role="agent").status == 202
    wait_for(lambda: "Bo here" in bot.graph.texts_to(customer), timeout=TIMEOUT)
    kinds = [t for t, _ in bot.events(f"conversation-{cid}")]
    assert "ReplyWithdrawn" in kinds and "ReplySpoken" not in kinds
    # Released, the bot answers the next message: everything before it was handled.
    assert tenant.call("POST", f"/v1/conversations/{cid}/release").status == 200
    bot.fence(customer, phone_number_id=number)
    assert audio_sends(bot.graph, customer) == []
    assert bot.graph.texts_to(customer)[0] == "Bo here"
