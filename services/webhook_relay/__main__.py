"""Composition root of the webhook relay: `python -m services.webhook_relay`.

One process: the HTTP server (/healthz, /readyz, /metrics and the admin API), and, while it
holds the relay lock, the subscription to the event store and the dispatcher. The relay needs
PostgreSQL only: its source is the event store and its queue is the deliveries table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import timedelta

from aiohttp import web
from aiohttp.resolver import ThreadedResolver

from services.webhook_relay import gauges, service
from services.webhook_relay.admin import setup_admin
from services.webhook_relay.dispatcher import Dispatcher
from services.webhook_relay.fanout import Subscription
from services.webhook_relay.leader import Leadership
from services.webhook_relay.schedule import Policy, parse_schedule
from services.webhook_relay.sender import Sender, make_session
from services.webhook_relay.service import Deps
from services.webhook_relay.ssrf import UrlPolicy
from services.webhook_relay.store import RelayStore
from shared.config import load_settings
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing, shutdown_tracing
from shared.runtime import (
    connect_with_retry,
    metrics_view,
    run_process,
    serve,
    wait_for_signal,
)

log = logging.getLogger("webhook_relay")
POOL_SIZE = 4
STOP_GRACE = 5.0  # below the 10 s `make down` waits before SIGKILL


def _named(dsn: str) -> str:
    """Tag the relay's database sessions (pg_stat_activity shows who is who)."""
    return dsn + ("&" if "?" in dsn else "?") + "application_name=webhook_relay"


class Current:
    """The admin API's view of this process: Deps while active, None while standby."""

    deps: Deps | None = None


async def main() -> None:
    settings = load_settings()
    if not settings.admin_token:
        log.warning("ADMIN_TOKEN is not set: relaying, but the admin API is refused")
    url_policy = UrlPolicy.from_settings(
        settings.webhook_allow_http, settings.webhook_allowed_networks
    )
    retry_policy = Policy(
        parse_schedule(settings.webhook_retry_schedule),
        jitter=settings.webhook_retry_jitter,
        max_pause=settings.webhook_max_pause,
    )
    dsn = _named(settings.database_url)
    # Small: a delivery holds a connection only for its short queries, never across the HTTP
    # call, and every stack shares the database server's connection limit.
    pool = await connect_with_retry(
        "database", lambda: create_pool(dsn, min_size=1, max_size=POOL_SIZE)
    )
    relay = RelayStore(pool)
    events = PostgresEventStore(pool)
    session = make_session(url_policy)
    sender = Sender(session, url_policy, settings.webhook_timeout)
    base = Deps(
        relay=relay,
        events=events,
        policy=url_policy,
        resolver=ThreadedResolver(),
        secret_grace=timedelta(seconds=settings.webhook_secret_grace_seconds),
    )
    current = Current()

    async def active() -> None:
        """The relay's work while this process holds the lock; rebuilt from the database
        every time it (re)gains it."""
        deps = base

        async def on_gone(endpoint_id: str, reason: str) -> None:
            await service.disable_gone(deps, endpoint_id, reason)

        dispatcher = Dispatcher(
            relay,
            sender,
            retry_policy,
            max_in_flight=settings.webhook_max_in_flight,
            breaker_fail_max=settings.breaker_fail_max,
            breaker_reset_seconds=settings.breaker_reset_seconds,
            on_gone=on_gone,
            retention=timedelta(days=settings.webhook_retention_days),
        )
        deps = replace(base, dispatcher=dispatcher)
        subscription = Subscription(
            events, relay, dispatcher.enqueued, settings.webhook_poll_interval
        )
        dispatching = asyncio.create_task(dispatcher.run())
        measuring = asyncio.create_task(gauges.run(pool))
        following: asyncio.Task[None] | None = None
        try:
            await dispatcher.loaded.wait()
            current.deps = deps
            following = asyncio.create_task(subscription.run())
            await asyncio.gather(dispatching, following)
        finally:
            current.deps = None
            for task in (following, dispatching, measuring):
                if task is not None:
                    task.cancel()
            await dispatcher.stop(STOP_GRACE)

    leadership = Leadership(dsn, active)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if current.deps is None:
            return web.Response(status=503, text=leadership.reason)
        try:
            async with pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1", timeout=2)
        except Exception as exc:
            return web.Response(status=503, text=f"database unreachable: {type(exc).__name__}")
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    setup_admin(app, lambda: current.deps, settings.admin_token)
    runner = await serve(app, settings.webhook_relay_port)
    leading = asyncio.create_task(leadership.run())
    log.info("started", extra={"fields": {"port": settings.webhook_relay_port}})
    await wait_for_signal()
    log.info("stopping")
    leading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leading
    await runner.cleanup()
    await session.close()
    await pool.close()
    shutdown_tracing()


if __name__ == "__main__":
    configure_logging("webhook_relay", load_settings().log_level)
    configure_tracing("webhook_relay")
    run_process(main())
