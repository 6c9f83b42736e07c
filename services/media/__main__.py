"""Composition root of media: `python -m services.media`."""

from __future__ import annotations

import logging

import aiohttp

from services.media.audio import (
    ElevenLabsSpeech,
    OpenAITranscriber,
    Transcriber,
    UnavailableTranscriber,
)
from services.media.graph import GraphMedia
from services.media.handlers import (
    Deps,
    deliver_reply,
    process_media,
    record_dead_letter,
    send_media,
)
from services.media.store import make_store, remove_stale_temporaries
from shared.broker.bus import Context, Publish, Service
from shared.resilience import Upstream
from shared.runtime import Infra, run_consumer_service
from shared.schemas import DeliverReply, ProcessMedia, SendMedia

log = logging.getLogger("media")


async def build(infra: Infra) -> Service:
    s = infra.settings
    session = aiohttp.ClientSession()
    infra.closers.append(session.close)

    def upstream(name: str, timeout: float) -> Upstream:
        # One breaker per upstream: Graph media, OpenAI audio, ElevenLabs.
        return Upstream(name, session, timeout, s.breaker_fail_max, s.breaker_reset_seconds)

    store, tmp_dir = make_store(s)
    removed = remove_stale_temporaries(tmp_dir)
    graph = None
    if s.whatsapp_access_token:
        graph = GraphMedia(
            upstream("whatsapp-media", s.media_download_timeout),
            s.whatsapp_api_url,
            s.whatsapp_access_token,
            s.media_download_timeout,
        )
    else:
        log.warning("WHATSAPP_ACCESS_TOKEN is empty: media cannot be downloaded (dry run)")
    transcriber: Transcriber = UnavailableTranscriber()
    if s.openai_api_key:
        transcriber = OpenAITranscriber(
            upstream("openai-audio", s.transcription_timeout),
            s.openai_base_url,
            s.openai_api_key,
            s.transcription_model,
        )
    speech = None
    if s.elevenlabs_api_key:
        speech = ElevenLabsSpeech(
            upstream("elevenlabs", s.elevenlabs_timeout),
            s.elevenlabs_base_url,
            s.elevenlabs_api_key,
            s.elevenlabs_voice_id,
            s.elevenlabs_model_id,
            s.elevenlabs_output_format,
        )
    log.info(
        "media store ready",
        extra={"fields": {"store": store.name, "stale_temporaries_removed": removed}},
    )
    deps = Deps(
        infra.store,
        store,
        graph,
        transcriber,
        speech,
        infra.bus.publish_all,
        tmp_dir,
        s.max_attempts,
    )
    service = Service("media")

    async def on_dead_letter(cmd: ProcessMedia, ctx: Context, error: str) -> None:
        await record_dead_letter(cmd, ctx, error, deps)

    @service.handles(ProcessMedia, on_dead_letter=on_dead_letter)
    async def on_process(cmd: ProcessMedia, ctx: Context) -> list[Publish]:
        return await process_media(cmd, ctx, deps)

    @service.handles(DeliverReply)
    async def on_deliver(cmd: DeliverReply, ctx: Context) -> list[Publish]:
        return await deliver_reply(cmd, ctx, deps)

    @service.handles(SendMedia)
    async def on_send_media(cmd: SendMedia, ctx: Context) -> list[Publish]:
        return await send_media(cmd, ctx, deps)

    return service


if __name__ == "__main__":
    run_consumer_service("media", build)
