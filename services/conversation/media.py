"""Media messages in the conversation: what is handed to the media service, and the turn
its answer makes. Pure: no I/O.

A media message (image, video, document, sticker, audio or voice note) is not answered at
once: the conversation records MediaRequested and asks the media service (ProcessMedia), and
the customer's later messages wait in the inbox until MediaProcessed comes back. Its answer
becomes the customer's turn: the transcript of a voice note, as if typed; for other files
their kind, file name and caption; and when something went wrong, a turn saying so, so the
customer is never ignored.
"""

from __future__ import annotations

from typing import Any

from services.conversation.interpret import interpret
from shared.events.conversation import MediaRequested
from shared.events.dedup import MessageReceived
from shared.schemas import MediaProcessed

MEDIA_KINDS = ("image", "video", "document", "sticker", "audio")

# What the customer is told a failure means (reason codes from the media service).
_FAILURES = {
    "not_found": "it is no longer available",
    "too_large": "it is larger than WhatsApp allows",
    "checksum_mismatch": "it arrived damaged",
    "not_configured": "files cannot be received right now",
}


def is_media(message: dict[str, Any]) -> bool:
    kind = message.get("type")
    return kind in MEDIA_KINDS and isinstance(message.get(kind), dict)


def label(kind: str, media: dict[str, Any]) -> str:
    return "voice note" if kind == "audio" and media.get("voice") else kind


def requested(seq: int, received: MessageReceived, trigger: str) -> MediaRequested:
    """`trigger` names the broker message whose handling asked (e.g. `customer:7`): if that
    message is delivered again, the request may not have been published, so it is again."""
    message = received.message
    kind = str(message.get("type"))
    media = dict(message.get(kind) or {})
    return MediaRequested(
        seq=seq,
        wamid=received.wamid,
        type=kind,
        kind=kind,
        media_id=None if media.get("id") is None else str(media.get("id")),
        voice=bool(kind == "audio" and media.get("voice")),
        media=media,
        described=interpret(message).text,
        phone_number_id=received.phone_number_id,
        customer=received.customer,
        address=received.reply_to(),
        customer_name=received.customer_name,
        timestamp=received.timestamp,
        received_at=received.received_at,
        trigger=trigger,
    )


def media_turn(request: MediaRequested, result: MediaProcessed) -> tuple[str, dict[str, Any]]:
    """The customer's turn for a processed media message: (text, detail)."""
    described = request.described or f"[{label(result.kind, request.media)}]"
    detail = {
        "media_id": request.media_id,
        "kind": result.kind,
        "voice": request.voice,
        "stored": result.stored,
        "sha256": result.sha256,
        "size": result.size,
        "mime_type": result.mime_type,
        "store_key": result.store_key,
        "transcription": result.transcription,
        "failure": result.failure,
    }
    if not result.stored:
        why = _FAILURES.get(result.failure, "it could not be received")
        return f"{described} (the file could not be received: {why})", detail
    if result.kind == "audio":
        if result.transcription == "ok" and result.transcript:
            return result.transcript, detail  # a voice note counts as if it were typed
        if result.transcription == "ok":
            return f"{described} (no words could be made out)", detail
        if result.transcription == "unavailable":
            return f"{described} (transcription unavailable)", detail
        return f"{described} (could not be transcribed)", detail
    return described, detail
