"""Events written by media: customers' files (stream `media-<wamid>`) and the voice notes
it prepares for replies (stream `voice-<command_id>`)."""

from __future__ import annotations

from typing import Any

from shared.eventstore import Event


def media_stream(wamid: str) -> str:
    return f"media-{wamid}"


def voice_stream(command_id: str) -> str:
    return f"voice-{command_id}"


class MediaStored(Event, kw_only=True):
    """A customer's file, downloaded, checked against Meta's sha256 and kept for good
    (content-addressed: the same bytes are kept once)."""

    conversation_id: str
    seq: int
    wamid: str
    phone_number_id: str = ""
    kind: str
    media_id: str | None = None
    caption: str = ""
    filename: str = ""
    voice: bool = False
    animated: bool = False
    message_media: dict[str, Any] = {}  # the message's media object as Meta sent it
    sha256: str
    sha256_verified: bool = False
    size: int
    mime_type: str = ""
    store: str = ""  # which store holds it: local or s3
    store_key: str
    deduplicated: bool = False
    url_fetches: int = 1  # 2: the first download URL had expired


class MediaTranscribed(Event, kw_only=True):
    """A voice note or audio file was transcribed (or transcription was unavailable)."""

    conversation_id: str = ""
    wamid: str
    seq: int = -1
    text: str = ""
    available: bool = True  # false: no OPENAI_API_KEY (note says so)
    transcriber: str = ""
    model: str = ""
    note: str = ""


class MediaAttemptFailed(Event, kw_only=True):
    """One attempt at a file failed in a way worth retrying; it will be tried again."""

    conversation_id: str = ""
    wamid: str
    seq: int = -1
    attempt: int
    stage: str = ""
    reason: str = ""
    error: str = ""


class MediaFailed(Event, kw_only=True):
    """A customer's file was given up (`reason`); the conversation still answers."""

    conversation_id: str = ""
    wamid: str
    seq: int = -1
    kind: str = ""
    media_id: str | None = None
    stage: str = ""  # download, store, transcribe
    reason: str = ""  # not_found, too_large, checksum_mismatch, ... (docs/media.md)
    error: str = ""
    attempts: int = 1


class VoiceReplyPrepared(Event, kw_only=True):
    """A reply was spoken (ElevenLabs) and uploaded to the Graph API as `media_id`."""

    command_id: str
    conversation_id: str = ""
    seq: int = -1
    media_id: str
    sha256: str = ""
    size: int = 0
    store_key: str = ""


class VoiceReplyFellBack(Event, kw_only=True):
    """A reply could not be spoken (`reason`): it goes out as text."""

    command_id: str
    conversation_id: str = ""
    seq: int = -1
    reason: str = ""  # elevenlabs_<status>, circuit_open, timeout, not_ogg_opus, ...
    error: str = ""


class MediaExpired(Event, kw_only=True):
    """A customer's file was deleted at its business's media retention (`days` after the
    message); the message stays, its file is gone. Stream `media-<wamid>`."""

    wamid: str
    conversation_id: str = ""
    business_id: str = ""
    store: str = ""
    store_key: str = ""
    days: int = 0


class MediaUploaded(Event, kw_only=True):
    """A stored file was uploaded to the Graph API for sending (no longer written; kept so
    that older rows still read)."""

    command_id: str
    conversation_id: str = ""
    phone_number_id: str = ""
    kind: str = ""
    store_key: str = ""
    mime_type: str = ""
    media_id: str


EVENTS: tuple[type[Event], ...] = (
    MediaStored,
    MediaTranscribed,
    MediaAttemptFailed,
    MediaFailed,
    VoiceReplyPrepared,
    VoiceReplyFellBack,
    MediaExpired,
    MediaUploaded,
)
