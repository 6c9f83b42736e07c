"""Customers' media through the real processes: kept for good, voice notes understood, order
kept, and every bad case still answered.

The Graph API's media endpoints and OpenAI's transcriptions are the fakes of
`tests.support.media_fakes` (real HTTP servers). Every test uses fresh customers and fresh
media ids, and random file contents, so tests never see each other's files.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any, cast

from services.media.domain import MAX_BYTES
from shared.payloads import messages_payload, text_message
from tests.e2e.harness import Running, load_fixtures, new_customer, uniquify
from tests.support.fakes import Fault, openai_error, wait_for
from tests.support.media_fakes import (
    FakeGraphMedia,
    FakeOpenAIAudio,
    is_download,
    is_media_info,
    is_transcription,
)

PHONE = "100000000000001"  # messages_payload's default business number
TIMEOUT = 45


def graph(bot: Running) -> FakeGraphMedia:
    return cast(FakeGraphMedia, bot.graph)


def openai(bot: Running) -> FakeOpenAIAudio:
    return cast(FakeOpenAIAudio, bot.openai)


def media_message(customer: str, kind: str, media: dict[str, Any]) -> dict[str, Any]:
    return {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: media,
    }


def post_media(bot: Running, customer: str, kind: str, media: dict[str, Any]) -> str:
    message = media_message(customer, kind, media)
    status, _ = bot.post(messages_payload([message], customer, PHONE))
    assert status == 200
    return str(message["id"])


def conversation(bot: Running, customer: str, phone: str = PHONE) -> list[tuple[str, dict]]:
    return bot.events("conversation-" + bot.conversation_id(phone, customer))


def media_events(bot: Running, wamid: str) -> list[tuple[str, dict[str, Any]]]:
    return bot.events(f"media-{wamid}")


def event(bot: Running, wamid: str, type_: str) -> dict[str, Any]:
    [data] = [d for t, d in media_events(bot, wamid) if t == type_]
    return data


def replies(bot: Running, customer: str, phone: str = PHONE) -> list[str]:
    return [d["text"] for t, d in conversation(bot, customer, phone) if t == "BotReplied"]


def customer_turn(bot: Running, customer: str, wamid: str, phone: str = PHONE) -> dict[str, Any]:
    [turn] = [
        d
        for t, d in conversation(bot, customer, phone)
        if t == "CustomerWrote" and d["wamid"] == wamid
    ]
    return turn


def stored_bytes(bot: Running, key: str) -> bytes:
    return (bot.media_dir / key).read_bytes()


def wait_answered(bot: Running, customer: str, count: int = 1) -> None:
    wait_for(
        lambda: len(bot.graph.texts_to(customer)) >= count,
        timeout=TIMEOUT,
        message=f"{count} repl(ies) to {customer}",
    )


# --- the pywa corpus's media and voice payloads ---------------------------------------------------

MEDIA_FIXTURES = [
    "message:image",
    "message:media_with_url",
    "message:video",
    "message:document",
    "message:audio",
    "message:voice",
    "message:static_sticker",
    "message:animated_sticker",
]


def test_every_media_payload_of_the_corpus_is_stored_whole_and_answered(bot: Running) -> None:
    fixtures = load_fixtures()
    cases = []
    for key in MEDIA_FIXTURES:
        customer = new_customer()
        payload = uniquify(fixtures[key], customer)
        value = payload["entry"][0]["changes"][0]["value"]
        [message] = value["messages"]
        kind = message["type"]
        media = message[kind]
        content = os.urandom(2048 + len(cases) * 1000)
        fake = graph(bot).add_media(content, media["mime_type"])
        media["id"] = fake.media_id  # the corpus repeats its media ids
        if kind == "audio":
            openai(bot).say(content, f"what the {key} says")
        assert bot.post(payload)[0] == 200
        cases.append((key, customer, value["metadata"]["phone_number_id"], message, content))

    for key, customer, phone, message, content in cases:
        wait_answered(bot, customer)
        kind = message["type"]
        stored = event(bot, message["id"], "MediaStored")
        assert stored["sha256"] == hashlib.sha256(content).hexdigest(), key
        assert stored["size"] == len(content), key
        assert stored["mime_type"] == message[kind]["mime_type"], key
        assert stored["store_key"].startswith("sha256/"), key
        assert stored["store_key"].endswith(stored["sha256"]), key  # in the customer's folder
        assert stored["caption"] == message[kind].get("caption", ""), key
        assert stored["filename"] == message[kind].get("filename", ""), key
        assert stored["message_media"] == message[kind], key  # every field, as Meta sent it
        assert stored["sha256_verified"] is True, key
        assert stored_bytes(bot, stored["store_key"]) == content, key

        turn = customer_turn(bot, customer, message["id"], phone)
        [reply] = replies(bot, customer, phone)
        assert bot.graph.texts_to(customer) == [reply], key
        if kind == "audio":
            said = f"what the {key} says"
            assert event(bot, message["id"], "MediaTranscribed")["text"] == said, key
            assert turn["text"] == said, key  # understood as if typed
            assert reply == f"echo: {said}", key
        else:
            assert turn["text"].startswith(f"[{kind}]"), key
            for extra in ("caption", "filename"):
                if message[kind].get(extra):
                    assert message[kind][extra] in turn["text"], key
            assert reply == f"echo: {turn['text']}", key
        assert turn["detail"]["store_key"] == stored["store_key"], key


# --- order ----------------------------------------------------------------------------------------


def test_a_voice_note_then_a_text_are_answered_in_that_order_however_slow_the_transcription(
    bot: Running,
) -> None:
    customer = new_customer()
    voice = os.urandom(4000)
    fake = graph(bot).add_media(voice, "audio/ogg; codecs=opus")
    openai(bot).say(voice, "can I book a table for two")
    # The transcription takes seconds; the text arrives meanwhile.
    openai(bot).inject(Fault(status=None, delay=3.0, match=is_transcription))
    wamid = post_media(bot, customer, "audio", {"id": fake.media_id, "voice": True})
    wait_for(lambda: openai(bot).requests_matching(is_transcription), timeout=TIMEOUT)
    assert bot.post(text_message("and one more thing", customer=customer))[0] == 200

    wait_answered(bot, customer, 2)
    assert bot.graph.texts_to(customer) == [
        "echo: can I book a table for two",
        "echo: and one more thing",
    ]
    seqs = [(t, d["seq"]) for t, d in conversation(bot, customer)]
    assert seqs == [
        ("MediaRequested", 0),
        ("CustomerWrote", 0),
        ("BotReplied", 0),
        ("CustomerWrote", 1),
        ("BotReplied", 1),
    ]
    assert customer_turn(bot, customer, wamid)["detail"]["voice"] is True


def test_texts_behind_several_media_messages_keep_their_order(bot: Running) -> None:
    customer = new_customer()
    image = graph(bot).add_media(os.urandom(3000), "image/jpeg", chunk_delay=0.3)
    voice = graph(bot).add_media(os.urandom(3000), "audio/ogg; codecs=opus")
    openai(bot).say(voice.content, "second")
    messages = [
        media_message(customer, "image", {"id": image.media_id, "caption": "first"}),
        media_message(customer, "audio", {"id": voice.media_id, "voice": True}),
    ]
    for message in messages:
        assert bot.post(messages_payload([message], customer, PHONE))[0] == 200
    assert bot.post(text_message("third", customer=customer))[0] == 200
    wait_answered(bot, customer, 3)
    assert bot.graph.texts_to(customer) == ["echo: [image] first", "echo: second", "echo: third"]


# --- storage --------------------------------------------------------------------------------------


def test_the_same_file_is_stored_once_per_customer(bot: Running) -> None:
    customer, other = new_customer(), new_customer()
    content = os.urandom(10_000)
    first = graph(bot).add_media(content, "image/png")
    second = graph(bot).add_media(content, "image/png")  # another media id, same bytes
    third = graph(bot).add_media(content, "image/png")  # the same bytes, another customer
    wamids = [
        post_media(bot, customer, "image", {"id": first.media_id}),
        post_media(bot, customer, "image", {"id": second.media_id}),
    ]
    theirs = post_media(bot, other, "image", {"id": third.media_id})
    wait_answered(bot, customer, 2)
    wait_answered(bot, other, 1)
    stored = [event(bot, w, "MediaStored") for w in wamids]
    assert [s["media_id"] for s in stored] == [first.media_id, second.media_id]
    assert stored[0]["store_key"] == stored[1]["store_key"]
    assert [s["deduplicated"] for s in stored] == [False, True]
    # Another customer's copy is a file of its own: erasing one never deletes the other's.
    other_stored = event(bot, theirs, "MediaStored")
    assert other_stored["deduplicated"] is False
    keys = [stored[0]["store_key"], other_stored["store_key"]]
    sha = hashlib.sha256(content).hexdigest()
    assert keys[0] != keys[1] and all(k.startswith("sha256/") and k.endswith(sha) for k in keys)
    assert not any(c in k for k in keys for c in (customer, other))  # a pseudonym, not them
    copies = [p for p in bot.media_dir.rglob("*") if p.is_file() and p.read_bytes() == content]
    assert sorted(copies) == sorted(bot.media_dir / k for k in keys)


def test_an_expired_download_url_is_asked_for_again(bot: Running) -> None:
    customer = new_customer()
    content = os.urandom(5000)
    fake = graph(bot).add_media(content, "application/pdf")
    # The first download URL is dead by the time it is used (as after 5 minutes).
    graph(bot).inject(
        Fault(status=404, json={"error": "URL signature expired"}, match=is_download(fake.media_id))
    )
    wamid = post_media(bot, customer, "document", {"id": fake.media_id, "filename": "a.pdf"})
    wait_answered(bot, customer)
    stored = event(bot, wamid, "MediaStored")
    assert stored["url_fetches"] == 2
    assert graph(bot).count(graph(bot).info_requests, fake.media_id) == 2
    assert stored_bytes(bot, stored["store_key"]) == content


def test_passing_graph_errors_are_retried_and_the_file_is_kept(bot: Running) -> None:
    customer = new_customer()
    content = os.urandom(5000)
    fake = graph(bot).add_media(content, "video/mp4")
    graph(bot).inject(
        Fault(status=500, match=is_media_info(fake.media_id)),
        Fault(status=503, match=is_download(fake.media_id)),
        Fault(status=502, match=is_download(fake.media_id)),
    )
    wamid = post_media(bot, customer, "video", {"id": fake.media_id})
    wait_answered(bot, customer)
    assert stored_bytes(bot, event(bot, wamid, "MediaStored")["store_key"]) == content
    assert graph(bot).pending_faults() == 0


# --- bad input: the customer still gets an answer, the event says what went wrong -----------------


def assert_failed_and_answered(
    bot: Running, customer: str, wamid: str, stage: str, reason: str
) -> dict[str, Any]:
    wait_answered(bot, customer)
    failed = event(bot, wamid, "MediaFailed")
    assert (failed["stage"], failed["reason"]) == (stage, reason), failed
    turn = customer_turn(bot, customer, wamid)
    assert turn["detail"]["failure"] == reason
    [reply] = replies(bot, customer)
    assert bot.graph.texts_to(customer) == [reply]
    return failed


def test_a_media_id_that_does_not_exist_is_answered_and_recorded(bot: Running) -> None:
    customer = new_customer()
    wamid = post_media(bot, customer, "image", {"id": "9" + uuid.uuid4().hex[:15]})
    failed = assert_failed_and_answered(bot, customer, wamid, "download", "not_found")
    assert failed["attempts"] == 1  # permanent: not retried
    assert "could not be received" in customer_turn(bot, customer, wamid)["text"]


def test_a_deleted_media_answered_with_404_is_not_retried(bot: Running) -> None:
    customer = new_customer()
    fake = graph(bot).add_media(os.urandom(100), "image/jpeg")
    graph(bot).inject(
        Fault(status=404, json={"error": {"code": 100}}, match=is_media_info(fake.media_id))
    )
    wamid = post_media(bot, customer, "image", {"id": fake.media_id})
    assert_failed_and_answered(bot, customer, wamid, "download", "not_found")
    assert graph(bot).count(graph(bot).info_requests, fake.media_id) == 0
    assert graph(bot).count(graph(bot).downloads_started, fake.media_id) == 0


def test_an_oversized_file_is_refused_before_its_download(bot: Running) -> None:
    customer = new_customer()
    fake = graph(bot).add_media(os.urandom(MAX_BYTES["sticker"] + 1), "image/webp")
    wamid = post_media(bot, customer, "sticker", {"id": fake.media_id, "animated": False})
    assert_failed_and_answered(bot, customer, wamid, "download", "too_large")
    assert graph(bot).count(graph(bot).downloads_started, fake.media_id) == 0


def test_a_file_larger_than_it_claims_is_cut_off_and_refused(bot: Running) -> None:
    customer = new_customer()
    content = os.urandom(MAX_BYTES["image"] + 100_000)
    fake = graph(bot).add_media(content, "image/jpeg", declared_size=1000)
    wamid = post_media(bot, customer, "image", {"id": fake.media_id})
    assert_failed_and_answered(bot, customer, wamid, "download", "too_large")
    sha = hashlib.sha256(content).hexdigest()
    assert not [p for p in bot.media_dir.rglob(sha)]  # in no customer's folder


def test_a_corrupt_file_is_retried_then_recorded_never_stored(bot: Running) -> None:
    customer = new_customer()
    content = os.urandom(20_000)
    damaged = content[:-10] + bytes(10)
    fake = graph(bot).add_media(content, "image/jpeg", served=damaged)
    wamid = post_media(bot, customer, "image", {"id": fake.media_id})
    failed = assert_failed_and_answered(bot, customer, wamid, "download", "checksum_mismatch")
    attempts = [d for t, d in media_events(bot, wamid) if t == "MediaAttemptFailed"]
    assert [a["reason"] for a in attempts] == ["checksum_mismatch"] * len(attempts)
    assert len(attempts) >= 1 and failed["attempts"] == len(attempts) + 1
    assert graph(bot).count(graph(bot).downloads_started, fake.media_id) == failed["attempts"]
    for data in (content, damaged):
        assert not [p for p in bot.media_dir.rglob(hashlib.sha256(data).hexdigest())]
    assert "MediaStored" not in [t for t, _ in media_events(bot, wamid)]


def test_a_transcription_error_still_gets_an_answer(bot: Running) -> None:
    customer = new_customer()
    voice = os.urandom(3000)
    fake = graph(bot).add_media(voice, "audio/ogg; codecs=opus")
    openai(bot).inject(
        openai_error(
            400,
            "Audio file might be corrupted or unsupported",
            "invalid_request_error",
            match=is_transcription,
        )
    )
    wamid = post_media(bot, customer, "audio", {"id": fake.media_id, "voice": True})
    failed = assert_failed_and_answered(bot, customer, wamid, "transcribe", "refused_400")
    assert "corrupted or unsupported" in failed["error"]
    # The file itself was kept.
    stored = event(bot, wamid, "MediaStored")
    assert stored_bytes(bot, stored["store_key"]) == voice
    assert customer_turn(bot, customer, wamid)["text"] == "[voice note] (could not be transcribed)"


def test_passing_transcription_errors_are_retried(bot: Running) -> None:
    customer = new_customer()
    voice = os.urandom(3000)
    fake = graph(bot).add_media(voice, "audio/ogg; codecs=opus")
    openai(bot).say(voice, "hello after two errors")
    openai(bot).inject(
        openai_error(500, match=is_transcription), openai_error(503, match=is_transcription)
    )
    post_media(bot, customer, "audio", {"id": fake.media_id, "voice": True})
    wait_answered(bot, customer)
    assert bot.graph.texts_to(customer) == ["echo: hello after two errors"]


# --- crash ----------------------------------------------------------------------------------------


def test_sigkill_of_media_in_the_middle_of_a_download_loses_nothing(bot: Running) -> None:
    customer = new_customer()
    content = os.urandom(1024 * 1024)
    # 16 chunks of 64 KiB, 0.25 s apart: about 4 s in flight.
    fake = graph(bot).add_media(content, "video/mp4", chunk_delay=0.25)
    wamid = post_media(bot, customer, "video", {"id": fake.media_id, "caption": "our shop"})
    assert bot.post(text_message("did you get it?", customer=customer))[0] == 200
    wait_for(
        lambda: graph(bot).count(graph(bot).downloads_started, fake.media_id) == 1,
        timeout=TIMEOUT,
        message="the download has started",
    )
    time.sleep(0.5)
    bot.stack.kill("media")
    assert bot.stack.pid("media") is None
    assert graph(bot).count(graph(bot).downloads_finished, fake.media_id) == 0
    assert media_events(bot, wamid) == []
    time.sleep(1.0)
    bot.restart("media")

    wait_answered(bot, customer, 2)
    # The text made conversation ask media again, and the killed delivery came back: two
    # ProcessMedia for one file. A fence through the customer's media lane proves both were
    # handled, and neither made a second reply or a third download.
    fence = bot.fence(customer, media=True)
    assert bot.graph.texts_to(customer) == [
        "echo: [video] our shop",
        "echo: did you get it?",
        fence,
    ]
    stored = event(bot, wamid, "MediaStored")
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    assert stored_bytes(bot, stored["store_key"]) == content
    assert graph(bot).count(graph(bot).downloads_started, fake.media_id) == 2
    assert [t for t, _ in media_events(bot, wamid)].count("MediaStored") == 1
