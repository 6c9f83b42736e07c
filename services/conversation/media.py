"""Media messages in the conversation: asking the media service, and the turn its answer
makes. Pure: no I/O.

A media message (image, video, document, sticker, audio or voice note) is not answered at
once: the conversation records MediaRequested and asks the media service (ProcessMedia), and
the customer's later messages wait in the inbox until MediaProcessed comes back. Its answer
becomes the customer's turn: the transcript of a voice note, as if typed; for other files
their kind, file name and caption; and when something went wrong, a turn saying so, so the
customer is never ignored.
"""

from __future__ import annotations

from typing import Any

from services.conversation.domain import Conversation
from services.conversation.interpret import interpret
from shared.broker.bus import Publish
from shared.eventstore import NewEvent, event_id_for
from shared.schemas import MediaProcessed, ProcessMedia

MEDIA_KINDS = ("image", "video", "document", "sticker", "audio")

# What the customer is told a failure means (reason codes from the media service).
_FAILURES = {
    "not_found": "it is no longer available",
    "too_large": "it is larger than WhatsApp allows",
    "checksum_mismatch": "it arrived damaged",
    "not_configured": "files cannot be received right now",
}


def is_media(received: dict[str, Any]) -> bool:
    message = received.get("message") or {}
    kind = message.get("type")
    return kind in MEDIA_KINDS and isinstance(message.get(kind), dict)


def label(kind: str, media: dict[str, Any]) -> str:
    return "voice note" if kind == "audio" and media.get("voice") else kind


def media_requested(
    state: Conversation, seq: int, received: dict[str, Any], trigger: str
) -> NewEvent:
    """`trigger` names the broker message whose handling asked (e.g. `customer:7`): if that
    message is delivered again, the request may not have been published, so it is again."""
    message = received.get("message") or {}
    kind = str(message.get("type"))
    media = dict(message.get(kind) or {})
    return NewEvent(
        "MediaRequested",
        {
            "seq": seq,
            "wamid": received["wamid"],
            "type": kind,
            "kind": kind,
            "media_id": media.get("id"),
            "voice": bool(kind == "audio" and media.get("voice")),
            "media": media,
            "described": interpret(message).text,
            "phone_number_id": received["phone_number_id"],
            "customer": received["customer"],
            "customer_name": received.get("customer_name", ""),
            "timestamp": received.get("timestamp"),
            "received_at": float(received.get("received_at") or 0.0),
            "trigger": trigger,
        },
        id=event_id_for("media-requested", state.conversation_id, str(seq)),
    )


def process_media(state: Conversation, seq: int) -> Publish:
    request = state.media_requests[seq]
    return Publish(
        "media",
        state.conversation_id,
        ProcessMedia(
            conversation_id=state.conversation_id,
            seq=seq,
            wamid=request["wamid"],
            phone_number_id=request["phone_number_id"],
            kind=request["kind"],
            media=request["media"],
            received_at=float(request.get("received_at") or 0.0),
        ),
    )


def resend(state: Conversation, trigger: str) -> list[Publish]:
    """ProcessMedia again when the request being awaited was made while handling `trigger`."""
    seq = state.awaiting_media
    if seq is None or state.media_requests[seq].get("trigger") != trigger:
        return []
    return [process_media(state, seq)]


def media_turn(request: dict[str, Any], result: MediaProcessed) -> tuple[str, dict[str, Any]]:
    """The customer's turn for a processed media message: (text, detail)."""
    media = request.get("media") or {}
    described = str(request.get("described") or f"[{label(result.kind, media)}]")
    detail = {
        "media_id": request.get("media_id"),
        "kind": result.kind,
        "voice": bool(request.get("voice")),
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
