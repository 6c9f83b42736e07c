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
from services.media.graph import GraphMedias
from services.media.handlers import Deps, prepare_voice, process_media, record_dead_letter
from shared.broker.bus import Context, Publish, Service
from shared.directory import Directory
from shared.media_store import make_store, remove_stale_temporaries
from shared.resilience import Upstream, Upstreams
from shared.runtime import Infra, Parts, run_service
from shared.schemas import PrepareVoice, ProcessMedia

log = logging.getLogger("media")


async def build(infra: Infra) -> Parts:
    s = infra.settings
    session = aiohttp.ClientSession()
    infra.closers.append(session.close)

    def upstream(name: str, timeout: float) -> Upstream:
        # One breaker per upstream: Graph media, OpenAI audio, ElevenLabs.
        return Upstream(name, session, timeout, s.breaker_fail_max, s.breaker_reset_seconds)

    store, tmp_dir = make_store(s)
    removed = remove_stale_temporaries(tmp_dir)
    directory = Directory(s, infra.pool)
    await directory.start()
    infra.closers.append(directory.stop)
    # Each number's token and breaker: one number's revoked token fails only its own files.
    graph = GraphMedias(
        Upstreams(
            "whatsapp-media",
            session,
            s.media_download_timeout,
            fail_max=s.breaker_fail_max,
            reset_timeout=s.breaker_reset_seconds,
        ),
        s.whatsapp_api_url,
        s.media_download_timeout,
        directory,
    )
    if not s.whatsapp_access_token:
        log.warning("WHATSAPP_ACCESS_TOKEN is empty: numbers without a token get no media")
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
        tmp_dir,
        s.max_attempts,
        directory,
    )
    service = Service("media")

    async def on_dead_letter(cmd: ProcessMedia, ctx: Context, error: str) -> list[Publish]:
        return await record_dead_letter(cmd, ctx, error, deps)

    @service.handles(ProcessMedia, on_dead_letter=on_dead_letter)
    async def on_process(cmd: ProcessMedia, ctx: Context) -> list[Publish]:
        return await process_media(cmd, ctx, deps)

    @service.handles(PrepareVoice)
    async def on_prepare_voice(cmd: PrepareVoice, ctx: Context) -> list[Publish]:
        return await prepare_voice(cmd, ctx, deps)

    return Parts(consumers=[service])


if __name__ == "__main__":
    run_service("media", build)
