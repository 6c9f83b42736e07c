"""Composition root of conversation: `python -m services.conversation`."""

from __future__ import annotations

import aiohttp

from services.conversation import idle, timers
from services.conversation.bots import Bots
from services.conversation.handlers import (
    Deps,
    give_up_answer,
    give_up_message,
    on_business_echo,
    on_business_message,
    on_change_handling,
    on_customer_message,
    on_flow_timeout,
    on_hand_back,
    on_media_processed,
    on_resume,
    on_voice,
)
from services.conversation.responders import OfflineResponder, OpenAIResponder, Responder
from shared.broker.bus import Context, Publish, Service
from shared.directory import Directory
from shared.eventstore.leadership import Leadership
from shared.resilience import Upstreams
from shared.runtime import Infra, Parts, run_service, session_dsn
from shared.schemas import (
    BusinessEcho,
    ChangeHandling,
    CustomerMessage,
    FlowTimeout,
    HandBack,
    MediaProcessed,
    Resume,
    SendBusinessMessage,
    VoiceFailed,
    VoicePrepared,
)


async def build(infra: Infra) -> Parts:
    s = infra.settings
    responder: Responder = OfflineResponder()
    if s.openai_api_key:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.openai_max_connections)
        )
        infra.closers.append(session.close)
        # The LLM key's limits are the account's: one breaker per business.
        upstream = Upstreams(
            "openai",
            session,
            s.openai_timeout,
            fail_max=s.breaker_fail_max,
            reset_timeout=s.breaker_reset_seconds,
        )
        responder = OpenAIResponder(
            upstream,
            s.openai_base_url,
            s.openai_api_key,
            s.openai_model,
            s.bot_persona,
            s.history_turns,
        )
    directory = Directory(s, infra.pool)
    await directory.start()
    infra.closers.append(directory.stop)
    deps = Deps(
        infra.store,
        responder,
        media_service=s.media_enabled,
        voice_replies=bool(s.elevenlabs_api_key),
        directory=directory,
        bots=Bots.for_settings(infra.store, llm_configured=bool(s.openai_api_key)),
        read_grace=s.read_receipt_grace_seconds,
    )
    service = Service("conversation", prefetch=s.conversation_prefetch)

    async def message_given_up(msg: CustomerMessage, ctx: Context, error: str) -> list[Publish]:
        await give_up_message(msg, ctx, error, deps)
        return []

    async def answer_given_up(
        msg: MediaProcessed | VoicePrepared | VoiceFailed, ctx: Context, error: str
    ) -> list[Publish]:
        return await give_up_answer(msg, ctx, error, deps)

    service.handles(CustomerMessage, on_dead_letter=message_given_up)(
        lambda msg, ctx: on_customer_message(msg, ctx, deps)
    )
    service.handles(MediaProcessed, on_dead_letter=answer_given_up)(
        lambda msg, ctx: on_media_processed(msg, ctx, deps)
    )
    for answer in (VoicePrepared, VoiceFailed):
        service.handles(answer, on_dead_letter=answer_given_up)(
            lambda msg, ctx: on_voice(msg, ctx, deps)
        )
    service.handles(Resume)(lambda msg, ctx: on_resume(msg, ctx, deps))
    service.handles(SendBusinessMessage)(lambda msg, ctx: on_business_message(msg, ctx, deps))
    service.handles(BusinessEcho)(lambda msg, ctx: on_business_echo(msg, ctx, deps))
    service.handles(ChangeHandling)(lambda msg, ctx: on_change_handling(msg, ctx, deps))
    service.handles(FlowTimeout)(lambda msg, ctx: on_flow_timeout(msg, ctx, deps))
    service.handles(HandBack)(lambda msg, ctx: on_hand_back(msg, ctx, deps))
    # Flow time-outs: one instance keeps the timer and fires it (timers.py).
    timing = Leadership(
        session_dsn(s.database_url, "conversation"),
        timers.NAME,
        lambda: timers.run(infra.pool, infra.bus),
    )
    # Idle hand-backs: one instance keeps their timer too (idle.py). It runs even with the
    # deployment's time at 0 (off): a business may set its own.
    idling = Leadership(
        session_dsn(s.database_url, "conversation-idle"),
        idle.NAME,
        lambda: idle.run(infra.pool, infra.bus, s.handback_idle_seconds),
    )
    return Parts(consumers=[service], tasks=[timing.run, idling.run])


if __name__ == "__main__":
    run_service("conversation", build)
