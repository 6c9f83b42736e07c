"""Media handlers against the in-memory event store and real HTTP fakes (Graph media, OpenAI
audio, ElevenLabs), with the local store in a temporary directory and S3Store against moto's
S3-compatible server: idempotent on redelivery, resumable, and every failure answered."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import pytest_asyncio
from moto.server import ThreadedMotoServer

from services.media.audio import ElevenLabsSpeech, OpenAITranscriber, UnavailableTranscriber
from services.media.domain import content_key, media_stream
from services.media.graph import GraphMedia
from services.media.handlers import (
    Deps,
    MediaAttemptError,
    deliver_reply,
    process_media,
    record_dead_letter,
    send_media,
    voice_stream,
)
from services.media.store import LocalStore, MediaStore, S3Store
from shared.broker.bus import Context, Publish
from shared.config import Settings
from shared.eventstore.memory import InMemoryEventStore
from shared.resilience import Upstream
from shared.schemas import DeliverReply, MediaProcessed, ProcessMedia, SendMedia, SendMessage
from tests.support.fakes import Fault
from tests.support.media_fakes import (
    FakeElevenLabs,
    FakeGraphMedia,
    FakeOpenAIAudio,
    is_download,
    spoken_text,
)

PHONE = "100000000000001"


def ctx(attempt: int = 0) -> Context:
    return Context(uuid.uuid4().hex, uuid.uuid4().hex, attempt, "p.c")


@pytest.fixture
def graph() -> Iterator[FakeGraphMedia]:
    with FakeGraphMedia("test-token") as server:
        yield server


@pytest.fixture
def openai() -> Iterator[FakeOpenAIAudio]:
    with FakeOpenAIAudio("test-key") as server:
        yield server


@pytest.fixture
def eleven() -> Iterator[FakeElevenLabs]:
    with FakeElevenLabs("test-eleven-key") as server:
        yield server


@dataclass
class Kit:
    deps: Deps
    root: Path
    published: list[Publish] = field(default_factory=list)

    async def events(self, stream: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.type, e.data) for e in await self.deps.store.read_stream(stream)]


@pytest_asyncio.fixture
async def kit(
    tmp_path: Path, graph: FakeGraphMedia, openai: FakeOpenAIAudio, eleven: FakeElevenLabs
) -> AsyncIterator[Kit]:
    async with aiohttp.ClientSession() as session:

        def upstream(name: str) -> Upstream:
            return Upstream(name, session, 5.0, 5, 30.0, backoff_factor=0.01)

        tmp = tmp_path / ".incoming"
        tmp.mkdir()
        published: list[Publish] = []

        async def publish(outputs: list[Publish], _: Context) -> None:
            published.extend(outputs)

        deps = Deps(
            InMemoryEventStore(),
            LocalStore(tmp_path),
            GraphMedia(upstream("whatsapp-media"), graph.url, "test-token", 5.0),
            OpenAITranscriber(upstream("openai-audio"), openai.url, "test-key", "whisper-1"),
            ElevenLabsSpeech(
                upstream("elevenlabs"),
                eleven.url,
                "test-eleven-key",
                "voice-1",
                "eleven_multilingual_v2",
                "opus_48000_64",
            ),
            publish,
            tmp,
            max_attempts=3,
        )
        yield Kit(deps, tmp_path, published)


def command(kind: str, media: dict[str, Any]) -> ProcessMedia:
    return ProcessMedia(
        conversation_id=f"{PHONE}.39111",
        seq=0,
        wamid=f"wamid.{uuid.uuid4().hex}",
        phone_number_id=PHONE,
        kind=kind,
        media=media,
    )


def answer(outputs: list[Publish]) -> MediaProcessed:
    [out] = outputs
    assert out.stage == "conversation"
    assert isinstance(out.message, MediaProcessed)
    return out.message


async def test_a_file_is_stored_and_a_redelivery_is_answered_again_without_a_download(
    kit: Kit, graph: FakeGraphMedia
) -> None:
    content = os.urandom(300_000)
    fake = graph.add_media(content, "application/pdf")
    cmd = command("document", {"id": fake.media_id, "filename": "menu.pdf", "caption": "see"})
    first = answer(await process_media(cmd, ctx(), kit.deps))
    assert first.stored and first.sha256 == hashlib.sha256(content).hexdigest()
    assert (kit.root / first.store_key).read_bytes() == content
    [(kind, stored)] = await kit.events(media_stream(cmd.wamid))
    assert kind == "MediaStored"
    assert (stored["caption"], stored["filename"], stored["media_id"]) == (
        "see",
        "menu.pdf",
        fake.media_id,
    )
    again = answer(await process_media(cmd, ctx(), kit.deps))
    assert again == first
    assert graph.count(graph.downloads_started, fake.media_id) == 1
    assert list(kit.deps.tmp_dir.iterdir()) == []  # no temporary file left behind


async def test_a_transient_failure_is_recorded_and_retried_then_given_up_and_answered(
    kit: Kit, graph: FakeGraphMedia
) -> None:
    fake = graph.add_media(os.urandom(1000), "image/jpeg")
    graph.fail_always(Fault(status=500, match=is_download(fake.media_id)))
    cmd = command("image", {"id": fake.media_id})
    for attempt in range(2):
        with pytest.raises(MediaAttemptError):
            await process_media(cmd, ctx(attempt), kit.deps)
    types = [t for t, _ in await kit.events(media_stream(cmd.wamid))]
    assert types == ["MediaAttemptFailed", "MediaAttemptFailed"]
    final = answer(await process_media(cmd, ctx(2), kit.deps))  # the last of 3 attempts
    assert (final.stored, final.failure) == (False, "upstream_500")
    graph.clear_faults()
    # Given up for good: a late redelivery answers the same, and downloads nothing.
    before = graph.count(graph.downloads_started, fake.media_id)
    assert answer(await process_media(cmd, ctx(), kit.deps)) == final
    assert graph.count(graph.downloads_started, fake.media_id) == before


async def test_transcription_resumes_after_the_file_was_stored(
    kit: Kit, graph: FakeGraphMedia, openai: FakeOpenAIAudio
) -> None:
    voice = os.urandom(2000)
    fake = graph.add_media(voice, "audio/ogg; codecs=opus")
    openai.say(voice, "hello")
    openai.fail_always(Fault(status=500))
    cmd = command("audio", {"id": fake.media_id, "voice": True})
    with pytest.raises(MediaAttemptError):
        await process_media(cmd, ctx(), kit.deps)
    openai.clear_faults()
    done = answer(await process_media(cmd, ctx(1), kit.deps))
    assert (done.transcription, done.transcript) == ("ok", "hello")
    assert graph.count(graph.downloads_started, fake.media_id) == 1
    [transcribed] = [t for t in openai.transcriptions if t["sha256"] == done.sha256]
    assert transcribed["filename"].endswith(".ogg") and transcribed["model"] == "whisper-1"
    types = [t for t, _ in await kit.events(media_stream(cmd.wamid))]
    assert types == ["MediaStored", "MediaAttemptFailed", "MediaTranscribed"]


async def test_without_an_openai_key_a_voice_note_is_kept_and_marked_unavailable(
    kit: Kit, graph: FakeGraphMedia
) -> None:
    kit.deps.transcriber = UnavailableTranscriber()
    fake = graph.add_media(os.urandom(500), "audio/ogg; codecs=opus")
    cmd = command("audio", {"id": fake.media_id, "voice": True})
    done = answer(await process_media(cmd, ctx(), kit.deps))
    assert (done.stored, done.transcription) == (True, "unavailable")
    transcribed = dict(await kit.events(media_stream(cmd.wamid)))["MediaTranscribed"]
    assert transcribed["note"] == "transcription unavailable"


async def test_without_an_access_token_media_is_recorded_as_not_received(kit: Kit) -> None:
    kit.deps.graph = None
    cmd = command("image", {"id": "123"})
    done = answer(await process_media(cmd, ctx(), kit.deps))
    assert (done.stored, done.failure) == (False, "not_configured")


async def test_the_dead_letter_hook_records_the_failure_and_still_answers(kit: Kit) -> None:
    cmd = command("video", {"id": "123"})
    await record_dead_letter(cmd, ctx(), "undecodable", kit.deps)
    failed = dict(await kit.events(media_stream(cmd.wamid)))["MediaFailed"]
    assert (failed["stage"], failed["reason"]) == ("process", "dead_lettered")
    assert answer(kit.published).failure == "dead_lettered"


# --- S3-compatible store (moto's server, real HTTP on loopback) ---------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_endpoint: str, tmp_path: Path) -> S3Store:
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        media_s3_bucket=bucket,
        media_s3_endpoint_url=s3_endpoint,
        media_s3_access_key_id="test",
        media_s3_secret_access_key="test",
        media_s3_prefix="whatsapp/",
    )
    store = S3Store.from_settings(settings, tmp_path / ".incoming")
    store.client.create_bucket(Bucket=bucket)
    return store


def temp_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"{uuid.uuid4().hex}.part"
    path.write_bytes(data)
    return path


async def test_s3_store_keeps_content_once_and_reads_it_back(
    s3_store: S3Store, s3_endpoint: str, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    sha = hashlib.sha256(data).hexdigest()
    key, existed = await s3_store.put(temp_file(tmp_path, data), sha, "image/png")
    assert (key, existed) == (content_key(sha), False)
    again, existed = await s3_store.put(temp_file(tmp_path, data), sha, "image/png")
    assert (again, existed) == (key, True)
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.glob("*.part")))
    assert leftovers == []  # both temporaries consumed
    # Seen through a separate client, as any other reader of the bucket would.
    other = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    listed = other.list_objects_v2(Bucket=s3_store.bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"whatsapp/{key}"]
    head = other.head_object(Bucket=s3_store.bucket, Key=f"whatsapp/{key}")
    assert head["ContentType"] == "image/png" and head["Metadata"]["sha256"] == sha
    async with s3_store.local_copy(key) as path:
        assert path.read_bytes() == data
    assert not path.exists()
    assert not await s3_store.exists(content_key("0" * 64))


async def test_media_is_processed_into_an_s3_store(
    kit: Kit, graph: FakeGraphMedia, openai: FakeOpenAIAudio, s3_store: S3Store
) -> None:
    kit.deps.media = s3_store
    voice = os.urandom(50_000)
    openai.say(voice, "stored in s3")
    fake = graph.add_media(voice, "audio/ogg; codecs=opus")
    done = answer(
        await process_media(command("audio", {"id": fake.media_id, "voice": True}), ctx(), kit.deps)
    )
    assert (done.stored, done.transcript) == (True, "stored in s3")
    async with s3_store.local_copy(done.store_key) as path:
        assert path.read_bytes() == voice


# --- replies -------------------------------------------------------------------------------------


def reply(voice: bool = True, text: str = "see you at eight") -> DeliverReply:
    return DeliverReply(
        command_id=str(uuid.uuid4()),
        conversation_id=f"{PHONE}.39111",
        phone_number_id=PHONE,
        to="39111",
        text=text,
        seq=4,
        voice=voice,
    )


def sent(outputs: list[Publish]) -> SendMessage:
    [out] = outputs
    assert out.stage == "outbound" and isinstance(out.message, SendMessage)
    return out.message


async def test_a_voice_reply_is_spoken_uploaded_and_sent_by_id_once(
    kit: Kit, graph: FakeGraphMedia, eleven: FakeElevenLabs
) -> None:
    cmd = reply()
    send = sent(await deliver_reply(cmd, ctx(), kit.deps))
    assert send.command_id == cmd.command_id
    assert send.payload["type"] == "audio"
    upload = graph.upload(send.payload["audio"]["id"])
    assert (upload["phone_number_id"], upload["type"]) == (PHONE, "audio/ogg")
    assert spoken_text(upload["data"]) == cmd.text
    [synthesis] = eleven.syntheses
    assert (synthesis.voice_id, synthesis.output_format) == ("voice-1", "opus_48000_64")
    # Redelivered: the same message again, nothing synthesised or uploaded twice.
    assert sent(await deliver_reply(cmd, ctx(), kit.deps)) == send
    assert len(eleven.syntheses) == 1 and len(graph.uploads) == 1


async def test_a_failing_synthesis_falls_back_to_text_and_stays_text(
    kit: Kit, eleven: FakeElevenLabs
) -> None:
    eleven.fail_always(Fault(status=500))
    cmd = reply()
    send = sent(await deliver_reply(cmd, ctx(), kit.deps))
    assert send.payload == {"type": "text", "text": {"body": cmd.text, "preview_url": False}}
    [(kind, data)] = await kit.events(voice_stream(cmd.command_id))
    assert (kind, data["reason"]) == ("VoiceReplyFellBack", "elevenlabs_500")
    tries = len(eleven.requests)
    eleven.clear_faults()
    # The decision stands: a redelivery sends the same text, it does not try speech again.
    assert sent(await deliver_reply(cmd, ctx(), kit.deps)) == send
    assert len(eleven.requests) == tries


async def test_speech_that_is_not_ogg_opus_is_never_sent_as_a_voice_note(
    kit: Kit, graph: FakeGraphMedia
) -> None:
    assert isinstance(kit.deps.speech, ElevenLabsSpeech)
    kit.deps.speech.output_format = "mp3_44100_128"
    send = sent(await deliver_reply(reply(), ctx(), kit.deps))
    assert send.payload["type"] == "text"
    assert graph.uploads == []


async def test_a_text_reply_on_the_media_path_is_passed_on_as_text(kit: Kit) -> None:
    cmd = reply(voice=False)
    send = sent(await deliver_reply(cmd, ctx(), kit.deps))
    assert send.payload["text"]["body"] == cmd.text and send.seq == cmd.seq
    assert await kit.events(voice_stream(cmd.command_id)) == []


async def store_file(store: MediaStore, tmp: Path, data: bytes, mime: str) -> str:
    key, _ = await store.put(temp_file(tmp, data), hashlib.sha256(data).hexdigest(), mime)
    return key


@pytest.mark.parametrize(
    ("kind", "mime", "caption", "filename", "body"),
    [
        ("image", "image/jpeg", "our menu", "", {"caption": "our menu"}),
        (
            "document",
            "application/pdf",
            "prices",
            "prices.pdf",
            {"caption": "prices", "filename": "prices.pdf"},
        ),
        ("audio", "audio/ogg", "", "", {}),
        ("video", "video/mp4", "tour", "", {"caption": "tour"}),
        ("sticker", "image/webp", "", "", {}),
    ],
)
async def test_the_bot_sends_a_stored_file_by_uploading_it_first(
    kit: Kit,
    graph: FakeGraphMedia,
    kind: str,
    mime: str,
    caption: str,
    filename: str,
    body: dict[str, str],
) -> None:
    data = os.urandom(4000)
    key = await store_file(kit.deps.media, kit.deps.tmp_dir, data, mime)
    cmd = SendMedia(
        command_id=str(uuid.uuid4()),
        conversation_id=f"{PHONE}.39111",
        phone_number_id=PHONE,
        to="39111",
        kind=kind,
        store_key=key,
        mime_type=mime,
        caption=caption,
        filename=filename,
    )
    send = sent(await send_media(cmd, ctx(), kit.deps))
    media_id = send.payload[kind].pop("id")
    assert send.payload == {"type": kind, kind: body}
    upload = graph.upload(media_id)
    assert (upload["data"], upload["type"], upload["phone_number_id"]) == (data, mime, PHONE)
    # Redelivered: sent by the recorded id, not uploaded again.
    assert sent(await send_media(cmd, ctx(), kit.deps)).payload[kind]["id"] == media_id
    assert len(graph.uploads) == 1
