"""Pure media code: Meta's sha256 formats, size limits, content keys, the stream fold, Ogg/Opus
recognition, and the turn a processed file becomes in the conversation."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.conversation.domain import Conversation, Turn
from services.conversation.media import media_turn
from services.conversation.responders import OfflineResponder
from services.media.domain import (
    ANIMATED_STICKER_MAX,
    MAX_BYTES,
    MediaState,
    expected_digest,
    is_ogg_opus,
    max_bytes,
    processed,
)
from shared.events.conversation import MediaRequested
from shared.events.media import MediaAttemptFailed, MediaFailed, MediaStored, MediaTranscribed
from shared.eventstore import Event, Position, RecordedEvent
from shared.media_store import content_key, media_owner
from shared.schemas import MediaProcessed, ProcessMedia
from tests.support.media_fakes import ogg_opus, spoken_text


def test_meta_sha256_is_read_as_hex_or_base64() -> None:
    data = os.urandom(100)
    digest = hashlib.sha256(data).digest()
    assert expected_digest(digest.hex()) == digest
    assert expected_digest(digest.hex().upper()) == digest
    assert expected_digest(base64.b64encode(digest).decode()) == digest
    # The corpus has a truncated one ("4654+8g="): nothing to check against, not a digest.
    for value in ("4654+8g=", "", None, "zz" * 32, 42):
        assert expected_digest(value) is None


def test_size_limits_are_meta_s_per_kind() -> None:
    assert max_bytes("image", {}) == 5 * 1024 * 1024
    assert max_bytes("document", {}) == 100 * 1024 * 1024
    assert max_bytes("sticker", {"animated": False}) == 100 * 1024
    assert max_bytes("sticker", {"animated": True}) == ANIMATED_STICKER_MAX
    assert max_bytes("audio", {"voice": True}) == MAX_BYTES["audio"]


def test_content_key_depends_only_on_the_bytes() -> None:
    a = hashlib.sha256(b"same").hexdigest()
    assert content_key(a) == content_key(hashlib.sha256(b"same").hexdigest())
    assert content_key(a) != content_key(hashlib.sha256(b"other").hexdigest())
    assert content_key(a).endswith(a)


def test_the_same_bytes_of_two_owners_get_two_keys() -> None:
    sha = hashlib.sha256(b"same").hexdigest()
    one, two = media_owner("100.391111111111"), media_owner("100.392222222222")
    assert one != two and "391111111111" not in one
    assert content_key(sha, one) != content_key(sha, two)
    assert content_key(sha, one) == content_key(sha, media_owner("100.391111111111"))
    assert content_key(sha, one).endswith(sha)


def test_ogg_opus_is_recognised_and_other_audio_is_not() -> None:
    ogg = ogg_opus("hello there")
    assert is_ogg_opus(ogg)
    assert spoken_text(ogg) == "hello there"
    assert not is_ogg_opus(b"ID3\x04\x00" + os.urandom(100))  # mp3
    assert not is_ogg_opus(ogg[:20])
    vorbis = ogg.replace(b"OpusHead", b"\x01vorbis\x00", 1)
    assert not is_ogg_opus(vorbis)


def recorded(event: Event, version: int) -> RecordedEvent:
    return RecordedEvent(
        uuid.uuid4(), "media-w", version, Position(version, version), event, {}, datetime.now(UTC)
    )


def command(kind: str, **media: Any) -> ProcessMedia:
    return ProcessMedia(
        conversation_id="p.c",
        seq=3,
        wamid="wamid.X",
        phone_number_id="p",
        kind=kind,
        media={"id": "m1", **media},
    )


def test_a_stream_is_finished_when_stored_and_for_audio_transcribed() -> None:
    stored = recorded(
        MediaStored(
            conversation_id="p.c",
            seq=3,
            wamid="w",
            kind="audio",
            sha256="ab",
            size=5,
            store_key="k",
        ),
        0,
    )
    state = MediaState.from_events("w", [stored])
    assert state.finished("image") and not state.finished("audio")
    attempt = recorded(MediaAttemptFailed(wamid="w", attempt=1, reason="timeout"), 1)
    state = MediaState.from_events("w", [stored, attempt])
    assert state.attempts_failed == 1 and not state.finished("audio")
    done = recorded(MediaTranscribed(wamid="w", text="hi", available=True), 2)
    state = MediaState.from_events("w", [stored, attempt, done])
    assert state.finished("audio") and state.version == 2
    answer = processed(command("audio", voice=True), state)
    assert (answer.stored, answer.transcription, answer.transcript) == (True, "ok", "hi")
    failed = MediaState.from_events("w", [recorded(MediaFailed(wamid="w", reason="not_found"), 0)])
    assert failed.finished("audio")
    answer = processed(command("audio", voice=True), failed)
    assert (answer.stored, answer.failure, answer.transcription) == (False, "not_found", "failed")


def result(kind: str, **fields: Any) -> MediaProcessed:
    return MediaProcessed(
        conversation_id="p.c", seq=3, wamid="wamid.X", kind=kind, **{"stored": True, **fields}
    )


@pytest.mark.parametrize(
    ("request_", "answer", "text"),
    [
        (
            {"described": "[voice note]", "voice": True},
            result("audio", transcription="ok", transcript="book a table"),
            "book a table",
        ),
        (
            {"described": "[voice note]", "voice": True},
            result("audio", transcription="unavailable"),
            "[voice note] (transcription unavailable)",
        ),
        (
            {"described": "[audio]"},
            result("audio", transcription="failed", failure="refused_400"),
            "[audio] (could not be transcribed)",
        ),
        (
            {"described": "[voice note]", "voice": True},
            result("audio", transcription="ok", transcript=""),
            "[voice note] (no words could be made out)",
        ),
        ({"described": "[document] menu.pdf"}, result("document"), "[document] menu.pdf"),
        (
            {"described": "[image] look"},
            result("image", stored=False, failure="too_large"),
            "[image] look (the file could not be received: it is larger than WhatsApp allows)",
        ),
    ],
)
def test_the_turn_a_processed_file_makes(
    request_: dict[str, Any], answer: MediaProcessed, text: str
) -> None:
    request = MediaRequested(
        seq=3,
        wamid="wamid.X",
        kind=answer.kind,
        phone_number_id="p",
        customer="c",
        **request_,
    )
    got, detail = media_turn(request, answer)
    assert got == text
    assert detail["failure"] == answer.failure and detail["stored"] == answer.stored


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ("[image] my cat", "Thanks, I received your image."),
        ("[document] menu.pdf", "Thanks, I received your document."),
        ("[sticker]", "Nice sticker!"),
        ("[voice note] (transcription unavailable)", "could you type your message?"),
        ("[video] (the file could not be received: it arrived damaged)", "couldn't open the video"),
    ],
)
def test_the_offline_responder_answers_media_turns_sensibly(turn: str, expected: str) -> None:
    state = Conversation("p.c", turns=[Turn("customer", "hi"), Turn("bot", "hello")])
    state.turns.append(Turn("customer", turn))
    assert expected in OfflineResponder().text(state)
