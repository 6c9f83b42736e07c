"""Composition root of outbound: `python -m services.outbound`."""

from __future__ import annotations

import logging

import aiohttp

from services.outbound.graph import GraphClient
from services.outbound.handlers import Deps, mark_read, send_message, track_status
from services.outbound.ratelimit import SharedRateLimiter
from shared.broker.bus import Context, Publish, Service
from shared.directory import Directory
from shared.resilience import Upstreams
from shared.runtime import Infra, Parts, run_service
from shared.schemas import MarkRead, SendMessage, StatusUpdate

log = logging.getLogger("outbound")


async def build(infra: Infra) -> Parts:
    s = infra.settings
    session = aiohttp.ClientSession()
    infra.closers.append(session.close)
    # One breaker per number: Meta's limits and a token's failures are each number's own.
    upstreams = Upstreams(
        "whatsapp",
        session,
        s.whatsapp_timeout,
        fail_max=s.breaker_fail_max,
        reset_timeout=s.breaker_reset_seconds,
    )
    directory = Directory(s, infra.pool)
    await directory.start()
    infra.closers.append(directory.stop)
    if not s.whatsapp_access_token:
        log.warning("WHATSAPP_ACCESS_TOKEN is empty: numbers without a token are a dry run")
    deps = Deps(
        infra.store,
        GraphClient(upstreams, s.whatsapp_api_url),
        # One budget per number across every outbound instance (several may run).
        SharedRateLimiter(infra.pool, s.whatsapp_rate_per_second),
        directory,
    )
    service = Service("outbound")

    @service.handles(SendMessage)
    async def on_send(cmd: SendMessage, ctx: Context) -> list[Publish]:
        return await send_message(cmd, ctx, deps)

    @service.handles(MarkRead)
    async def on_mark_read(cmd: MarkRead, ctx: Context) -> list[Publish]:
        return await mark_read(cmd, ctx, deps)

    @service.handles(StatusUpdate)
    async def on_status(cmd: StatusUpdate, ctx: Context) -> list[Publish]:
        return await track_status(cmd, ctx, deps)

    return Parts(consumers=[service])


if __name__ == "__main__":
    run_service("outbound", build)
