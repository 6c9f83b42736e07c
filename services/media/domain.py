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

from shared.eventstore import NewEvent, RecordedEvent, event_id_for
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


def content_key(sha256_hex: str) -> str:
    """Content-addressed: the same bytes always get the same key, so they are kept once."""
    return f"sha256/{sha256_hex[:2]}/{sha256_hex}"


def media_stream(wamid: str) -> str:
    return f"media-{wamid}"


def needs_transcript(kind: str) -> bool:
    return kind == "audio"


@dataclass
class MediaState:
    wamid: str
    version: int = -1
    stored: dict[str, Any] | None = None
    transcribed: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None
    attempts_failed: int = 0
    history: list[str] = field(default_factory=list)

    @classmethod
    def from_events(cls, wamid: str, events: list[RecordedEvent]) -> MediaState:
        state = cls(wamid)
        for event in events:
            state.history.append(event.type)
            state.version = event.version
            if event.type == "MediaStored":
                state.stored = event.data
            elif event.type == "MediaTranscribed":
                state.transcribed = event.data
            elif event.type == "MediaAttemptFailed":
                state.attempts_failed += 1
            elif event.type == "MediaFailed":
                state.failed = event.data
        return state

    def finished(self, kind: str) -> bool:
        if self.failed is not None:
            return True
        if self.stored is None:
            return False
        return not needs_transcript(kind) or self.transcribed is not None


def stored_event(cmd: ProcessMedia, data: dict[str, Any]) -> NewEvent:
    media = cmd.media
    return NewEvent(
        "MediaStored",
        {
            "conversation_id": cmd.conversation_id,
            "seq": cmd.seq,
            "wamid": cmd.wamid,
            "phone_number_id": cmd.phone_number_id,
            "kind": cmd.kind,
            "media_id": media.get("id"),
            "caption": media.get("caption", ""),
            "filename": media.get("filename", ""),
            "voice": bool(media.get("voice")),
            "animated": bool(media.get("animated")),
            "message_media": media,  # every field of the media message, as Meta sent it
            **data,
        },
        id=event_id_for("media-stored", cmd.wamid),
    )


def transcribed_event(cmd: ProcessMedia, data: dict[str, Any]) -> NewEvent:
    return NewEvent(
        "MediaTranscribed",
        {"conversation_id": cmd.conversation_id, "wamid": cmd.wamid, "seq": cmd.seq, **data},
        id=event_id_for("media-transcribed", cmd.wamid),
    )


def attempt_failed_event(
    cmd: ProcessMedia, state: MediaState, stage: str, reason: str, error: str
) -> NewEvent:
    attempt = state.attempts_failed + 1
    return NewEvent(
        "MediaAttemptFailed",
        {
            "conversation_id": cmd.conversation_id,
            "wamid": cmd.wamid,
            "seq": cmd.seq,
            "attempt": attempt,
            "stage": stage,
            "reason": reason,
            "error": error[:500],
        },
        id=event_id_for("media-attempt-failed", cmd.wamid, str(attempt)),
    )


def failed_event(
    cmd: ProcessMedia, state: MediaState, stage: str, reason: str, error: str
) -> NewEvent:
    return NewEvent(
        "MediaFailed",
        {
            "conversation_id": cmd.conversation_id,
            "wamid": cmd.wamid,
            "seq": cmd.seq,
            "kind": cmd.kind,
            "media_id": cmd.media.get("id"),
            "stage": stage,
            "reason": reason,
            "error": error[:500],
            "attempts": state.attempts_failed + 1,
        },
        id=event_id_for("media-failed", cmd.wamid),
    )


def processed(cmd: ProcessMedia, state: MediaState) -> MediaProcessed:
    """The answer to conversation, built from what the stream recorded (so a redelivered
    command gets the same answer)."""
    stored = state.stored or {}
    transcribed = state.transcribed
    failed = state.failed or {}
    transcription = ""
    transcript = ""
    if needs_transcript(cmd.kind):
        if transcribed is not None:
            transcription = "ok" if transcribed.get("available") else "unavailable"
            transcript = str(transcribed.get("text") or "")
        elif failed:
            transcription = "failed"
    return MediaProcessed(
        conversation_id=cmd.conversation_id,
        seq=cmd.seq,
        wamid=cmd.wamid,
        kind=cmd.kind,
        stored=state.stored is not None,
        sha256=str(stored.get("sha256", "")),
        size=int(stored.get("size", 0) or 0),
        mime_type=str(stored.get("mime_type", "")),
        store_key=str(stored.get("store_key", "")),
        deduplicated=bool(stored.get("deduplicated", False)),
        transcription=transcription,
        transcript=transcript,
        failure=str(failed.get("reason", "")),
        error=str(failed.get("error", "")),
    )


# --- Ogg/Opus: what WhatsApp plays as a voice note ------------------------------------------------


def is_ogg_opus(data: bytes) -> bool:
    """The first Ogg page carries the OpusHead packet (RFC 7845)."""
    if len(data) < 28 or data[:4] != b"OggS":
        return False
    segments = data[26]
    start = 27 + segments
    return data[start : start + 8] == b"OpusHead"
