"""Composition root of outbound: `python -m services.outbound`."""

from __future__ import annotations

import logging

import aiohttp

from services.outbound.graph import GraphClient
from services.outbound.handlers import Deps, mark_read, send_message, track_status
from services.outbound.ratelimit import RateLimiter
from shared.broker.bus import Context, Publish, Service
from shared.resilience import Upstream
from shared.runtime import Infra, run_consumer_service
from shared.schemas import MarkRead, SendMessage, StatusUpdate

log = logging.getLogger("outbound")


async def build(infra: Infra) -> Service:
    s = infra.settings
    graph = None
    if s.whatsapp_access_token:
        session = aiohttp.ClientSession()
        infra.closers.append(session.close)
        upstream = Upstream(
            "whatsapp", session, s.whatsapp_timeout, s.breaker_fail_max, s.breaker_reset_seconds
        )
        graph = GraphClient(upstream, s.whatsapp_api_url, s.whatsapp_access_token)
    else:
        log.warning("WHATSAPP_ACCESS_TOKEN is empty: dry run, replies are recorded, not sent")
    deps = Deps(infra.store, graph, RateLimiter(s.whatsapp_rate_per_second))
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

    return service


if __name__ == "__main__":
    run_consumer_service("outbound", build)
