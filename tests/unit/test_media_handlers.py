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
import msgspec
import pytest
import pytest_asyncio
from moto.server import ThreadedMotoServer

from services.media.audio import ElevenLabsSpeech, OpenAITranscriber, UnavailableTranscriber
from services.media.graph import GraphMedia
from services.media.handlers import (
    Deps,
    MediaAttemptError,
    prepare_voice,
    process_media,
    record_dead_letter,
)
from shared.broker.bus import Context, Publish
from shared.config import Settings
from shared.events.media import media_stream, voice_stream
from shared.eventstore.memory import InMemoryEventStore
from shared.media_store import LocalStore, S3Store, content_key, make_store, media_owner
from shared.resilience import Upstream
from shared.schemas import MediaProcessed, PrepareVoice, ProcessMedia, VoiceFailed, VoicePrepared
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
        recorded = await self.deps.store.read_stream(stream)
        return [(e.type, msgspec.to_builtins(e.event)) for e in recorded]


@pytest_asyncio.fixture
async def kit(
    tmp_path: Path, graph: FakeGraphMedia, openai: FakeOpenAIAudio, eleven: FakeElevenLabs
) -> AsyncIterator[Kit]:
    async with aiohttp.ClientSession() as session:

        def upstream(name: str) -> Upstream:
            return Upstream(name, session, 5.0, 5, 30.0, backoff_factor=0.01)

        tmp = tmp_path / ".incoming"
        tmp.mkdir()
        deps = Deps(
            InMemoryEventStore(),
            LocalStore(tmp_path),
            fixed(GraphMedia(upstream("whatsapp-media"), graph.url, "test-token", 5.0)),
            OpenAITranscriber(upstream("openai-audio"), openai.url, "test-key", "whisper-1"),
            ElevenLabsSpeech(
                upstream("elevenlabs"),
                eleven.url,
                "test-eleven-key",
                "voice-1",
                "eleven_multilingual_v2",
                "opus_48000_64",
            ),
            tmp,
            max_attempts=3,
        )
        yield Kit(deps, tmp_path)


def fixed(graph: GraphMedia | None) -> Any:
    """Every number's Graph client is this one (None: a number without a token)."""

    async def for_number(_: str) -> GraphMedia | None:
        return graph

    return for_number


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
    kit.deps.graph = fixed(None)
    cmd = command("image", {"id": "123"})
    done = answer(await process_media(cmd, ctx(), kit.deps))
    assert (done.stored, done.failure) == (False, "not_configured")


async def test_the_dead_letter_hook_records_the_failure_and_still_answers(kit: Kit) -> None:
    cmd = command("video", {"id": "123"})
    published = await record_dead_letter(cmd, ctx(), "undecodable", kit.deps)
    failed = dict(await kit.events(media_stream(cmd.wamid)))["MediaFailed"]
    assert (failed["stage"], failed["reason"]) == ("process", "dead_lettered")
    assert answer(published).failure == "dead_lettered"


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


# --- voice replies -------------------------------------------------------------------------------


def reply(text: str = "see you at eight") -> PrepareVoice:
    return PrepareVoice(
        command_id=str(uuid.uuid4()),
        conversation_id=f"{PHONE}.39111",
        phone_number_id=PHONE,
        seq=4,
        text=text,
    )


def voiced(outputs: list[Publish]) -> VoicePrepared | VoiceFailed:
    """The media service answers the conversation, which sends: it never sends itself."""
    [out] = outputs
    assert out.stage == "conversation" and out.key == f"{PHONE}.39111"
    assert isinstance(out.message, VoicePrepared | VoiceFailed)
    return out.message


async def test_a_voice_reply_is_spoken_uploaded_and_answered_with_its_media_id_once(
    kit: Kit, graph: FakeGraphMedia, eleven: FakeElevenLabs
) -> None:
    cmd = reply()
    answered = voiced(await prepare_voice(cmd, ctx(), kit.deps))
    assert isinstance(answered, VoicePrepared)
    assert (answered.command_id, answered.seq) == (cmd.command_id, 4)
    upload = graph.upload(answered.media_id)
    assert (upload["phone_number_id"], upload["type"]) == (PHONE, "audio/ogg")
    assert spoken_text(upload["data"]) == cmd.text
    [synthesis] = eleven.syntheses
    assert (synthesis.voice_id, synthesis.output_format) == ("voice-1", "opus_48000_64")
    # Redelivered: the same answer again, nothing synthesised or uploaded twice.
    assert voiced(await prepare_voice(cmd, ctx(), kit.deps)) == answered
    assert len(eleven.syntheses) == 1 and len(graph.uploads) == 1


async def test_a_failing_synthesis_is_answered_as_failed_and_stays_so(
    kit: Kit, eleven: FakeElevenLabs
) -> None:
    eleven.fail_always(Fault(status=500))
    cmd = reply()
    answered = voiced(await prepare_voice(cmd, ctx(), kit.deps))
    assert isinstance(answered, VoiceFailed) and answered.reason == "elevenlabs_500"
    [(kind, data)] = await kit.events(voice_stream(cmd.command_id))
    assert (kind, data["reason"]) == ("VoiceReplyFellBack", "elevenlabs_500")
    tries = len(eleven.requests)
    eleven.clear_faults()
    # The decision stands: a redelivery answers the same, it does not try speech again.
    assert voiced(await prepare_voice(cmd, ctx(), kit.deps)) == answered
    assert len(eleven.requests) == tries


async def test_speech_that_is_not_ogg_opus_is_never_uploaded_as_a_voice_note(
    kit: Kit, graph: FakeGraphMedia
) -> None:
    assert isinstance(kit.deps.speech, ElevenLabsSpeech)
    kit.deps.speech.output_format = "mp3_44100_128"
    answered = voiced(await prepare_voice(reply(), ctx(), kit.deps))
    assert isinstance(answered, VoiceFailed) and answered.reason == "not_ogg_opus"
    assert graph.uploads == []


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: whatever the service's is, customers' files stay private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


async def test_customers_files_and_folders_are_private_whatever_the_umask(
    open_umask: None, tmp_path: Path, graph: FakeGraphMedia, openai: FakeOpenAIAudio
) -> None:
    root = tmp_path / "media"
    store, tmp_dir = make_store(Settings(media_dir=str(root)))
    assert modes(root) == {".": 0o700, ".incoming": 0o700}
    async with aiohttp.ClientSession() as session:
        deps = Deps(
            InMemoryEventStore(),
            store,
            fixed(GraphMedia(Upstream("g", session, 5.0, 5, 30.0), graph.url, "test-token", 5.0)),
            OpenAITranscriber(Upstream("o", session, 5.0, 5, 30.0), openai.url, "test-key", "w"),
            None,
            tmp_dir,
            max_attempts=3,
        )
        content = os.urandom(5000)
        fake = graph.add_media(content, "image/jpeg")
        stored = answer(await process_media(command("image", {"id": fake.media_id}), ctx(), deps))
    assert stored.stored
    sha = hashlib.sha256(content).hexdigest()
    key = content_key(sha, media_owner(command("image", {"id": fake.media_id}).conversation_id))
    assert (root / key).read_bytes() == content
    found = modes(root)
    assert found.pop(key) == 0o600
    assert set(found.values()) == {0o700}, found  # ., .incoming, sha256, its owner, xx

    # A file left by an older version (or another writer) is made private as it is kept.
    loose = tmp_dir / "loose.part"
    loose.write_bytes(b"voice")
    loose.chmod(0o666)
    key2, _ = await store.put(loose, hashlib.sha256(b"voice").hexdigest(), "audio/ogg")
    assert (root / key2).stat().st_mode & 0o777 == 0o600
    assert all(m == 0o700 for p, m in modes(root).items() if (root / p).is_dir())
