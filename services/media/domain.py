"""What the media service knows about a customer's file, folded from `media-<wamid>`. Pure.

Events: MediaStored (once the bytes are verified and kept), MediaTranscribed (audio only),
MediaAttemptFailed (a transient failure that will be retried), MediaFailed (given up, with
the reason). A stream is finished when it failed, or when the file is stored and, for audio,
the transcription is done (or unavailable).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from shared.events.media import MediaAttemptFailed, MediaFailed, MediaStored, MediaTranscribed
from shared.eventstore import NewEvent, RecordedEvent, new
from shared.schemas import MediaProcessed, ProcessMedia

KB = 1024
MB = 1024 * 1024
# Meta's limits for media a customer can send (Cloud API "supported media types").
MAX_BYTES = {
    "audio": 16 * MB,
    "image": 5 * MB,
    "video": 16 * MB,
    "document": 100 * MB,
    "sticker": 100 * KB,
}
ANIMATED_STICKER_MAX = 500 * KB
MEDIA_KINDS = tuple(MAX_BYTES)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def max_bytes(kind: str, media: dict[str, Any]) -> int:
    if kind == "sticker" and media.get("animated"):
        return ANIMATED_STICKER_MAX
    return MAX_BYTES.get(kind, MAX_BYTES["document"])


def expected_digest(value: Any) -> bytes | None:
    """Meta's sha256 as raw bytes: hex in the media endpoint's answer, base64 in webhooks.
    None when it is neither (nothing to check against)."""
    if not isinstance(value, str) or not value:
        return None
    if _HEX64.match(value):
        return bytes.fromhex(value)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


@dataclass
class MediaState:
    wamid: str
    version: int = -1
    stored: MediaStored | None = None
    transcribed: MediaTranscribed | None = None
    failed: MediaFailed | None = None
    attempts_failed: int = 0
    history: list[str] = field(default_factory=list)

    @classmethod
    def from_events(cls, wamid: str, events: list[RecordedEvent]) -> MediaState:
        state = cls(wamid)
        for recorded in events:
            state.history.append(recorded.type)
            state.version = recorded.version
            match recorded.event:
                case MediaStored() as event:
                    state.stored = event
                case MediaTranscribed() as event:
                    state.transcribed = event
                case MediaAttemptFailed():
                    state.attempts_failed += 1
                case MediaFailed() as event:
                    state.failed = event
        return state

    def finished(self, kind: str) -> bool:
        if self.failed is not None:
            return True
        if self.stored is None:
            return False
        return not needs_transcript(kind) or self.transcribed is not None


def needs_transcript(kind: str) -> bool:
    return kind == "audio"


def stored_event(cmd: ProcessMedia, data: dict[str, Any]) -> NewEvent:
    media = cmd.media
    event = MediaStored(
        conversation_id=cmd.conversation_id,
        seq=cmd.seq,
        wamid=cmd.wamid,
        phone_number_id=cmd.phone_number_id,
        kind=cmd.kind,
        media_id=None if media.get("id") is None else str(media.get("id")),
        caption=str(media.get("caption", "")),
        filename=str(media.get("filename", "")),
        voice=bool(media.get("voice")),
        animated=bool(media.get("animated")),
        message_media=media,
        **data,
    )
    return new(event, "media-stored", cmd.wamid)


def transcribed_event(cmd: ProcessMedia, data: dict[str, Any]) -> NewEvent:
    event = MediaTranscribed(
        conversation_id=cmd.conversation_id, wamid=cmd.wamid, seq=cmd.seq, **data
    )
    return new(event, "media-transcribed", cmd.wamid)


def attempt_failed_event(
    cmd: ProcessMedia, state: MediaState, stage: str, reason: str, error: str
) -> NewEvent:
    attempt = state.attempts_failed + 1
    event = MediaAttemptFailed(
        conversation_id=cmd.conversation_id,
        wamid=cmd.wamid,
        seq=cmd.seq,
        attempt=attempt,
        stage=stage,
        reason=reason,
        error=error[:500],
    )
    return new(event, "media-attempt-failed", cmd.wamid, str(attempt))


def failed_event(
    cmd: ProcessMedia, state: MediaState, stage: str, reason: str, error: str
) -> NewEvent:
    event = MediaFailed(
        conversation_id=cmd.conversation_id,
        wamid=cmd.wamid,
        seq=cmd.seq,
        kind=cmd.kind,
        media_id=None if cmd.media.get("id") is None else str(cmd.media.get("id")),
        stage=stage,
        reason=reason,
        error=error[:500],
        attempts=state.attempts_failed + 1,
    )
    return new(event, "media-failed", cmd.wamid)


def processed(cmd: ProcessMedia, state: MediaState) -> MediaProcessed:
    """The answer to conversation, built from what the stream recorded (so a redelivered
    command gets the same answer)."""
    stored, transcribed, failed = state.stored, state.transcribed, state.failed
    transcription = ""
    transcript = ""
    if needs_transcript(cmd.kind):
        if transcribed is not None:
            transcription = "ok" if transcribed.available else "unavailable"
            transcript = transcribed.text
        elif failed is not None:
            transcription = "failed"
    return MediaProcessed(
        conversation_id=cmd.conversation_id,
        seq=cmd.seq,
        wamid=cmd.wamid,
        kind=cmd.kind,
        stored=stored is not None,
        sha256=stored.sha256 if stored else "",
        size=stored.size if stored else 0,
        mime_type=stored.mime_type if stored else "",
        store_key=stored.store_key if stored else "",
        deduplicated=stored.deduplicated if stored else False,
        transcription=transcription,
        transcript=transcript,
        failure=failed.reason if failed else "",
        error=failed.error if failed else "",
    )


# --- Ogg/Opus: what WhatsApp plays as a voice note ------------------------------------------------


def is_ogg_opus(data: bytes) -> bool:
    """The first Ogg page carries the OpusHead packet (RFC 7845)."""
    if len(data) < 28 or data[:4] != b"OggS":
        return False
    segments = data[26]
    start = 27 + segments
    return data[start : start + 8] == b"OpusHead"
