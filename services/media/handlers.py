"""Media handlers: customers' files in, voice replies and media replies out.

`process_media` works through the `media-<wamid>` stream as a small state machine: download
and store (MediaStored), then for audio transcribe (MediaTranscribed). Each step is committed
before the next, so a redelivery (crash, retry) resumes where it stopped, and a command whose
stream is finished just gets its answer published again. A transient failure is recorded
(MediaAttemptFailed) and retried through the stage's retry queue; a permanent one, or the last
attempt, is recorded as MediaFailed and still answered, so the customer is never ignored.

`prepare_voice` speaks a reply (ElevenLabs → upload) and answers the conversation with the
uploaded voice note (VoicePrepared) or why not (VoiceFailed); the conversation sends it. The
outcome is committed in `voice-<command_id>` before the answer goes out, so a redelivered
command gets the same answer and nothing is spoken or uploaded twice.
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
    needs_transcript,
    processed,
    stored_event,
    transcribed_event,
)
from services.media.graph import GraphMedia, MediaError
from shared.broker.bus import BrokerUnavailable, Context, Publish
from shared.directory import Directory
from shared.errors import PermanentError, RetryLater
from shared.events.media import VoiceReplyFellBack, VoiceReplyPrepared, media_stream, voice_stream
from shared.eventstore import EventStore, NewEvent, StoreUnavailable, new
from shared.media_store import MediaStore, media_owner, open_private, private_dir
from shared.resilience import CircuitOpen, TransientNetworkError, UpstreamError
from shared.schemas import PrepareVoice, ProcessMedia, VoiceFailed, VoicePrepared

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
    graph: Callable[[str], Awaitable[GraphMedia | None]]  # the number's; None: no token
    transcriber: Transcriber
    speech: ElevenLabsSpeech | None  # None: no ELEVENLABS_API_KEY
    tmp_dir: Path
    max_attempts: int = 5
    directory: Directory | None = None  # each number's voice (None: the configured one)


class NotConfigured(MediaError, PermanentError):
    reason = "not_configured"


class MediaAttemptError(Exception):
    """A recorded transient failure: the runtime retries the command after a delay."""


def _answer(cmd: ProcessMedia, state: MediaState) -> Publish:
    return Publish("conversation", cmd.conversation_id, processed(cmd, state))


async def _load(store: EventStore, wamid: str) -> MediaState:
    return MediaState.from_events(wamid, await store.read_stream(media_stream(wamid)))


async def _append(deps: Deps, state: MediaState, event: NewEvent, ctx: Context) -> MediaState:
    event = event.with_metadata(ctx.metadata())
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
    graph = await deps.graph(cmd.phone_number_id)
    if graph is None:
        raise NotConfigured("the number has no access token: media cannot be downloaded")
    if not media_id:
        raise NotConfigured("the message has no media id")
    downloaded = await graph.download(
        media_id,
        max_bytes(cmd.kind, cmd.media),
        deps.tmp_dir,
        fallback_sha256=str(cmd.media.get("sha256") or ""),
    )
    mime_type = downloaded.info.mime_type or str(cmd.media.get("mime_type") or "")
    try:
        key, existed = await deps.media.put(
            downloaded.path, downloaded.sha256, mime_type, media_owner(cmd.conversation_id)
        )
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
    assert state.stored is not None
    mime = state.stored.mime_type or "audio/ogg"
    extension = _EXTENSIONS.get(mime.split(";")[0].strip().lower(), "ogg")
    async with deps.media.local_copy(state.stored.store_key) as path:
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


async def record_dead_letter(
    cmd: ProcessMedia, ctx: Context, error: str, deps: Deps
) -> list[Publish]:
    """The command is going to the dead letters (it could not even be handled): record the
    failure and still answer, or the conversation would wait for this file for ever."""
    state = await _load(deps.store, cmd.wamid)
    if not state.finished(cmd.kind):
        event = failed_event(cmd, state, "process", "dead_lettered", error)
        state = await _append(deps, state, event, ctx)
        metrics.media_processed.labels(cmd.kind, "failed").inc()
    return [_answer(cmd, state)]


# --- voice replies --------------------------------------------------------------------------


def _voice_answer(cmd: PrepareVoice, event: VoiceReplyPrepared | VoiceReplyFellBack) -> Publish:
    answer: VoicePrepared | VoiceFailed
    if isinstance(event, VoiceReplyPrepared):
        answer = VoicePrepared(
            command_id=cmd.command_id,
            conversation_id=cmd.conversation_id,
            seq=cmd.seq,
            media_id=event.media_id,
        )
    else:
        answer = VoiceFailed(
            command_id=cmd.command_id,
            conversation_id=cmd.conversation_id,
            seq=cmd.seq,
            reason=event.reason,
        )
    return Publish("conversation", cmd.conversation_id, answer)


async def prepare_voice(cmd: PrepareVoice, ctx: Context, deps: Deps) -> list[Publish]:
    stream = voice_stream(cmd.command_id)
    history = await deps.store.read_stream(stream)
    for recorded in reversed(history):
        if isinstance(recorded.event, VoiceReplyPrepared | VoiceReplyFellBack):
            return [_voice_answer(cmd, recorded.event)]
    outcome: VoiceReplyPrepared | VoiceReplyFellBack
    try:
        data = await _speak(cmd, deps)
    except (StoreUnavailable, BrokerUnavailable):
        raise
    except Exception as exc:
        reason, _ = classify(exc)
        if isinstance(exc, UpstreamError) and exc.upstream == "elevenlabs":
            reason = f"elevenlabs_{exc.status}"
        log.warning("voice reply falls back to text", extra={"fields": {"reason": reason}})
        outcome = VoiceReplyFellBack(
            command_id=cmd.command_id,
            conversation_id=cmd.conversation_id,
            seq=cmd.seq,
            reason=reason,
            error=f"{type(exc).__name__}: {exc}"[:500],
        )
        key = "voice-fallback"
        metrics.voice_replies.labels("fallback").inc()
        metrics.voice_fallbacks.labels(reason).inc()
    else:
        outcome = VoiceReplyPrepared(
            command_id=cmd.command_id, conversation_id=cmd.conversation_id, seq=cmd.seq, **data
        )
        key = "voice-prepared"
        metrics.voice_replies.labels("voice").inc()
    await deps.store.append(
        stream,
        [new(outcome, key, cmd.command_id, metadata=ctx.metadata())],
        expected_version=len(history) - 1,
    )
    return [_voice_answer(cmd, outcome)]


async def _speak(cmd: PrepareVoice, deps: Deps) -> dict[str, Any]:
    if deps.speech is None:
        raise NotConfigured("no ELEVENLABS_API_KEY")
    graph = await deps.graph(cmd.phone_number_id)
    if graph is None:
        raise NotConfigured("the number has no access token: cannot upload (dry run)")
    number = await deps.directory.number(cmd.phone_number_id) if deps.directory else None
    audio = await deps.speech.synthesize(cmd.text, number.voice_id if number else "")
    if not is_ogg_opus(audio):
        # WhatsApp plays only Ogg/Opus as a voice note: never send something else as one.
        error = MediaError(f"speech is not Ogg/Opus (starts with {audio[:8]!r})")
        error.reason = "not_ogg_opus"
        raise error
    sha = hashlib.sha256(audio).hexdigest()
    path = private_dir(deps.tmp_dir) / f"{uuid.uuid4().hex}.voice"
    with open_private(path) as out:
        out.write(audio)
    try:
        media_id = await graph.upload(cmd.phone_number_id, path, "audio/ogg", "reply.ogg")
        metrics.uploads.labels("ok").inc()
        store_key = ""
        try:
            # Kept like customers' files: what the bot said, as the customer heard it.
            store_key, _ = await deps.media.put(
                path, sha, "audio/ogg", media_owner(cmd.conversation_id)
            )
        except Exception as exc:
            log.warning("voice reply not stored", extra={"fields": {"error": type(exc).__name__}})
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return {"media_id": media_id, "sha256": sha, "size": len(audio), "store_key": store_key}
