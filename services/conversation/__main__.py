"""Composition root of conversation: `python -m services.conversation`."""

from __future__ import annotations

import aiohttp

from services.conversation.handlers import Deps, handle_customer_message, record_failure
from services.conversation.media_handlers import handle_media_processed, record_media_failure
from services.conversation.responders import OfflineResponder, OpenAIResponder, Responder
from shared.broker.bus import Context, Publish, Service
from shared.resilience import Upstream
from shared.runtime import Infra, run_consumer_service
from shared.schemas import CustomerMessage, MediaProcessed


async def build(infra: Infra) -> Service:
    s = infra.settings
    responder: Responder = OfflineResponder()
    if s.openai_api_key:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.openai_max_connections)
        )
        infra.closers.append(session.close)
        upstream = Upstream(
            "openai", session, s.openai_timeout, s.breaker_fail_max, s.breaker_reset_seconds
        )
        responder = OpenAIResponder(
            upstream,
            s.openai_base_url,
            s.openai_api_key,
            s.openai_model,
            s.bot_persona,
            s.history_turns,
        )
    deps = Deps(
        infra.store,
        responder,
        infra.bus.publish_all,
        media_service=s.media_enabled,
        voice_replies=bool(s.elevenlabs_api_key),
    )
    service = Service("conversation", prefetch=s.conversation_prefetch)

    async def on_dead_letter(msg: CustomerMessage, ctx: Context, error: str) -> None:
        await record_failure(msg, ctx, error, deps)

    @service.handles(CustomerMessage, on_dead_letter=on_dead_letter)
    async def on_customer_message(msg: CustomerMessage, ctx: Context) -> list[Publish]:
        return await handle_customer_message(msg, ctx, deps)

    async def on_media_dead_letter(msg: MediaProcessed, ctx: Context, error: str) -> None:
        await record_media_failure(msg, ctx, error, deps)

    @service.handles(MediaProcessed, on_dead_letter=on_media_dead_letter)
    async def on_media_processed(msg: MediaProcessed, ctx: Context) -> list[Publish]:
        return await handle_media_processed(msg, ctx, deps)

    return service


if __name__ == "__main__":
    run_consumer_service("conversation", build)
