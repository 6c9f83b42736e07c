"""Media handlers: customers' files in, voice replies and media replies out.

`process_media` works through the `media-<wamid>` stream as a small state machine: download
and store (MediaStored), then for audio transcribe (MediaTranscribed). Each step is committed
before the next, so a redelivery (crash, retry) resumes where it stopped, and a command whose
stream is finished just gets its answer published again. A transient failure is recorded
(MediaAttemptFailed) and retried through the stage's retry queue; a permanent one, or the last
attempt, is recorded as MediaFailed and still answered, so the customer is never ignored.

`deliver_reply` speaks a reply (ElevenLabs → upload → audio message) or falls back to text; the
decision is committed in `voice-<command_id>` before the SendMessage goes out, and both use the
reply's command id, so outbound sends one of them, once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.media import metrics
from services.media.audio import ElevenLabsSpeech, Transcriber
from services.media.domain import (
    MediaState,
    attempt_failed_event,
    failed_event,
    is_ogg_opus,
    max_bytes,
    media_stream,
    needs_transcript,
    processed,
    stored_event,
    transcribed_event,
)
from services.media.graph import GraphMedia, MediaError
from services.media.store import MediaStore
from shared.broker.bus import BrokerUnavailable, Context, Publish
from shared.errors import PermanentError, RetryLater
from shared.eventstore import EventStore, NewEvent, StoreUnavailable, event_id_for
from shared.resilience import CircuitOpen, TransientNetworkError, UpstreamError
from shared.schemas import DeliverReply, ProcessMedia, SendMedia, SendMessage

log = logging.getLogger("media")

# File names OpenAI's transcription endpoint recognises the format by.
_EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/wav": "wav",
    "audio/webm": "webm",
}


@dataclass
class Deps:
    store: EventStore
    media: MediaStore
    graph: GraphMedia | None  # None: no WHATSAPP_ACCESS_TOKEN (dry run)
    transcriber: Transcriber
    speech: ElevenLabsSpeech | None  # None: no ELEVENLABS_API_KEY
    publish: Callable[[list[Publish], Context], Awaitable[None]]
    tmp_dir: Path
    max_attempts: int = 5


class NotConfigured(MediaError, PermanentError):
    reason = "not_configured"


class MediaAttemptError(Exception):
    """A recorded transient failure: the runtime retries the command after a delay."""


def _answer(cmd: ProcessMedia, state: MediaState) -> Publish:
    return Publish("conversation", cmd.conversation_id, processed(cmd, state))


async def _load(store: EventStore, wamid: str) -> MediaState:
    return MediaState.from_events(wamid, await store.read_stream(media_stream(wamid)))


async def _append(deps: Deps, state: MediaState, event: NewEvent, ctx: Context) -> MediaState:
    event = NewEvent(event.type, event.data, ctx.metadata(), event.id)
    # Expected version: a duplicate command racing this one cannot record a second outcome.
    await deps.store.append(media_stream(state.wamid), [event], expected_version=state.version)
    return await _load(deps.store, state.wamid)


def classify(exc: BaseException) -> tuple[str, bool]:
    """(reason code, permanent?) for a failure of one step."""
    if isinstance(exc, MediaError):
        return exc.reason, isinstance(exc, PermanentError)
    if isinstance(exc, UpstreamError):
        if exc.transient or exc.status in (401, 403):
            # 5xx, or a token the operator may fix: worth another attempt.
            return f"upstream_{exc.status}", False
        return f"refused_{exc.status}", True
    if isinstance(exc, TransientNetworkError):
        return ("timeout" if "Timeout" in str(exc) else "network"), False
    if isinstance(exc, RetryLater):
        return ("circuit_open" if "circuit open" in str(exc) else "throttled"), False
    if isinstance(exc, FileNotFoundError):
        return "stored_file_missing", True
    if isinstance(exc, PermanentError):
        return "refused", True
    return type(exc).__name__, False


async def process_media(cmd: ProcessMedia, ctx: Context, deps: Deps) -> list[Publish]:
    state = await _load(deps.store, cmd.wamid)
    if not state.finished(cmd.kind):
        state = await _advance(cmd, ctx, deps, state)
    return [_answer(cmd, state)]


async def _advance(cmd: ProcessMedia, ctx: Context, deps: Deps, state: MediaState) -> MediaState:
    stage = "download"
    try:
        if state.stored is None:
            data = await _download_and_store(cmd, deps)
            state = await _append(deps, state, stored_event(cmd, data), ctx)
            outcome = "deduplicated" if data["deduplicated"] else "stored"
            metrics.media_processed.labels(cmd.kind, outcome).inc()
            if not data["deduplicated"]:
                metrics.media_bytes_stored.inc(data["size"])
        if needs_transcript(cmd.kind) and state.transcribed is None:
            stage = "transcribe"
            state = await _transcribe(cmd, ctx, deps, state)
        return state
    except (StoreUnavailable, BrokerUnavailable):
        raise  # the database or broker, not this file: hold the lane, retry uncounted
    except RetryLater as exc:
        if stage != "transcribe" or not isinstance(exc, CircuitOpen):
            # Graph throttling us or its breaker open: hold the lane until a call may go
            # through (uncounted); every call that is made and fails counts as an attempt.
            raise
        # Transcription has been failing for everyone: answer now without a transcript
        # rather than keep the customer waiting for it.
        return await _give_up(cmd, ctx, deps, state, stage, exc, "circuit_open")
    except Exception as exc:
        if isinstance(exc, MediaError) and exc.stage != "download":
            stage = exc.stage
        reason, permanent = classify(exc)
        error = f"{type(exc).__name__}: {exc}"
        metrics.media_failures.labels(stage, reason).inc()
        last = (
            state.attempts_failed + 1 >= deps.max_attempts or ctx.attempt + 1 >= deps.max_attempts
        )
        if permanent or last:
            return await _give_up(cmd, ctx, deps, state, stage, exc, reason)
        log.warning(
            "media attempt failed; will retry",
            extra={"fields": {"kind": cmd.kind, "stage": stage, "reason": reason}},
        )
        await _append(deps, state, attempt_failed_event(cmd, state, stage, reason, error), ctx)
        raise MediaAttemptError(f"{stage}: {reason}: {error}") from exc


async def _give_up(
    cmd: ProcessMedia,
    ctx: Context,
    deps: Deps,
    state: MediaState,
    stage: str,
    exc: BaseException,
    reason: str,
) -> MediaState:
    log.warning(
        "media given up", extra={"fields": {"kind": cmd.kind, "stage": stage, "reason": reason}}
    )
    error = f"{type(exc).__name__}: {exc}"
    state = await _append(deps, state, failed_event(cmd, state, stage, reason, error), ctx)
    metrics.media_processed.labels(cmd.kind, "failed").inc()
    if stage == "transcribe":
        metrics.transcriptions.labels("failed").inc()
    return state


async def _download_and_store(cmd: ProcessMedia, deps: Deps) -> dict[str, Any]:
    media_id = str(cmd.media.get("id") or "")
    if deps.graph is None:
        raise NotConfigured("no WHATSAPP_ACCESS_TOKEN: media cannot be downloaded (dry run)")
    if not media_id:
        raise NotConfigured("the message has no media id")
    downloaded = await deps.graph.download(
        media_id,
        max_bytes(cmd.kind, cmd.media),
        deps.tmp_dir,
        fallback_sha256=str(cmd.media.get("sha256") or ""),
    )
    mime_type = downloaded.info.mime_type or str(cmd.media.get("mime_type") or "")
    try:
        key, existed = await deps.media.put(downloaded.path, downloaded.sha256, mime_type)
    except Exception as exc:
        error = MediaError(f"{type(exc).__name__}: {exc}")
        error.reason, error.stage = "store_failed", "store"
        raise error from exc
    finally:
        downloaded.path.unlink(missing_ok=True)
    return {
        "sha256": downloaded.sha256,
        "sha256_verified": downloaded.verified,
        "size": downloaded.size,
        "mime_type": mime_type,
        "store": deps.media.name,
        "store_key": key,
        "deduplicated": existed,
        "url_fetches": downloaded.url_fetches,
    }


async def _transcribe(cmd: ProcessMedia, ctx: Context, deps: Deps, state: MediaState) -> MediaState:
    stored = state.stored or {}
    mime = str(stored.get("mime_type") or "audio/ogg")
    extension = _EXTENSIONS.get(mime.split(";")[0].strip().lower(), "ogg")
    async with deps.media.local_copy(str(stored["store_key"])) as path:
        result = await deps.transcriber.transcribe(path, mime, f"{cmd.wamid[-24:]}.{extension}")
    metrics.transcriptions.labels("ok" if result.available else "unavailable").inc()
    data = {
        "text": result.text,
        "available": result.available,
        "transcriber": result.transcriber,
        "model": result.model,
    }
    if not result.available:
        data["note"] = "transcription unavailable"
    return await _append(deps, state, transcribed_event(cmd, data), ctx)


async def record_dead_letter(cmd: ProcessMedia, ctx: Context, error: str, deps: Deps) -> None:
    """The command is going to the dead letters (it could not even be handled): record the
    failure and still answer, or the conversation would wait for this file for ever."""
    state = await _load(deps.store, cmd.wamid)
    if not state.finished(cmd.kind):
        event = failed_event(cmd, state, "process", "dead_lettered", error)
        state = await _append(deps, state, event, ctx)
        metrics.media_processed.labels(cmd.kind, "failed").inc()
    await deps.publish([_answer(cmd, state)], ctx)


# --- replies --------------------------------------------------------------------------------------


def voice_stream(command_id: str) -> str:
    return f"voice-{command_id}"


def _send(cmd: DeliverReply | SendMedia, payload: dict[str, Any]) -> Publish:
    return Publish(
        "outbound",
        cmd.conversation_id,
        SendMessage(
            command_id=cmd.command_id,
            conversation_id=cmd.conversation_id,
            phone_number_id=cmd.phone_number_id,
            to=cmd.to,
            payload=payload,
            seq=cmd.seq,
            received_at=cmd.received_at,
        ),
    )


def _text_payload(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text, "preview_url": False}}


def _audio_payload(media_id: str) -> dict[str, Any]:
    return {"type": "audio", "audio": {"id": media_id}}


async def deliver_reply(cmd: DeliverReply, ctx: Context, deps: Deps) -> list[Publish]:
    if not cmd.voice:
        # On the media path only to stay behind this customer's earlier voice replies.
        return [_send(cmd, _text_payload(cmd.text))]
    stream = voice_stream(cmd.command_id)
    history = await deps.store.read_stream(stream)
    for event in reversed(history):
        if event.type == "VoiceReplyPrepared":
            return [_send(cmd, _audio_payload(event.data["media_id"]))]
        if event.type == "VoiceReplyFellBack":
            return [_send(cmd, _text_payload(cmd.text))]
    base = {"command_id": cmd.command_id, "conversation_id": cmd.conversation_id, "seq": cmd.seq}
    try:
        data = await _speak(cmd, deps)
    except (StoreUnavailable, BrokerUnavailable):
        raise
    except Exception as exc:
        reason, _ = classify(exc)
        if isinstance(exc, UpstreamError) and exc.upstream == "elevenlabs":
            reason = f"elevenlabs_{exc.status}"
        log.warning("voice reply falls back to text", extra={"fields": {"reason": reason}})
        event = NewEvent(
            "VoiceReplyFellBack",
            {**base, "reason": reason, "error": f"{type(exc).__name__}: {exc}"[:500]},
            ctx.metadata(),
            event_id_for("voice-fallback", cmd.command_id),
        )
        await deps.store.append(stream, [event], expected_version=len(history) - 1)
        metrics.voice_replies.labels("fallback").inc()
        metrics.voice_fallbacks.labels(reason).inc()
        return [_send(cmd, _text_payload(cmd.text))]
    event = NewEvent(
        "VoiceReplyPrepared",
        {**base, **data},
        ctx.metadata(),
        event_id_for("voice-prepared", cmd.command_id),
    )
    await deps.store.append(stream, [event], expected_version=len(history) - 1)
    metrics.voice_replies.labels("voice").inc()
    return [_send(cmd, _audio_payload(data["media_id"]))]


async def _speak(cmd: DeliverReply, deps: Deps) -> dict[str, Any]:
    if deps.speech is None:
        raise NotConfigured("no ELEVENLABS_API_KEY")
    if deps.graph is None:
        raise NotConfigured("no WHATSAPP_ACCESS_TOKEN: cannot upload (dry run)")
    audio = await deps.speech.synthesize(cmd.text)
    if not is_ogg_opus(audio):
        # WhatsApp plays only Ogg/Opus as a voice note: never send something else as one.
        error = MediaError(f"speech is not Ogg/Opus (starts with {audio[:8]!r})")
        error.reason = "not_ogg_opus"
        raise error
    sha = hashlib.sha256(audio).hexdigest()
    deps.tmp_dir.mkdir(parents=True, exist_ok=True)
    path = deps.tmp_dir / f"{uuid.uuid4().hex}.voice"
    path.write_bytes(audio)
    try:
        media_id = await deps.graph.upload(cmd.phone_number_id, path, "audio/ogg", "reply.ogg")
        metrics.uploads.labels("ok").inc()
        store_key = ""
        try:
            # Kept like customers' files: what the bot said, as the customer heard it.
            store_key, _ = await deps.media.put(path, sha, "audio/ogg")
        except Exception as exc:
            log.warning("voice reply not stored", extra={"fields": {"error": type(exc).__name__}})
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return {"media_id": media_id, "sha256": sha, "size": len(audio), "store_key": store_key}


def upload_stream(command_id: str) -> str:
    return f"upload-{command_id}"


def media_payload(cmd: SendMedia, media_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"id": media_id}
    if cmd.caption and cmd.kind in ("image", "video", "document"):
        body["caption"] = cmd.caption
    if cmd.filename and cmd.kind == "document":
        body["filename"] = cmd.filename
    return {"type": cmd.kind, cmd.kind: body}


async def send_media(cmd: SendMedia, ctx: Context, deps: Deps) -> list[Publish]:
    """Send a stored file: upload it (sending by link fails behind Meta's proxy, 131053),
    record the media id, then a SendMessage by id. A redelivery reuses the recorded id."""
    stream = upload_stream(cmd.command_id)
    history = await deps.store.read_stream(stream)
    for event in history:
        if event.type == "MediaUploaded":
            return [_send(cmd, media_payload(cmd, event.data["media_id"]))]
    if deps.graph is None:
        raise NotConfigured("no WHATSAPP_ACCESS_TOKEN: cannot upload (dry run)")
    suffix = (cmd.filename.rsplit(".", 1)[-1] if "." in cmd.filename else "") or "bin"
    async with deps.media.local_copy(cmd.store_key) as path:
        try:
            media_id = await deps.graph.upload(
                cmd.phone_number_id, path, cmd.mime_type, cmd.filename or f"file.{suffix}"
            )
        except Exception:
            metrics.uploads.labels("failed").inc()
            raise
    metrics.uploads.labels("ok").inc()
    await deps.store.append(
        stream,
        [
            NewEvent(
                "MediaUploaded",
                {
                    "command_id": cmd.command_id,
                    "conversation_id": cmd.conversation_id,
                    "phone_number_id": cmd.phone_number_id,
                    "kind": cmd.kind,
                    "store_key": cmd.store_key,
                    "mime_type": cmd.mime_type,
                    "media_id": media_id,
                },
                ctx.metadata(),
                event_id_for("media-uploaded", cmd.command_id),
            )
        ],
        expected_version=len(history) - 1,
    )
    return [_send(cmd, media_payload(cmd, media_id))]
