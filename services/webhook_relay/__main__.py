"""Composition root of the webhook relay: `python -m services.webhook_relay`.

One process: the HTTP server (/healthz, /readyz, /metrics and the admin API), and, while it
holds the relay lock, the subscription to the event store and the dispatcher. The relay needs
PostgreSQL only: its source is the event store and its queue is the deliveries table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta

from aiohttp import web
from aiohttp.resolver import ThreadedResolver

from services.webhook_relay import catalogue, gauges, service
from services.webhook_relay.admin import setup_admin
from services.webhook_relay.dispatcher import Dispatcher
from services.webhook_relay.fanout import FanOut
from services.webhook_relay.schedule import Policy, parse_schedule
from services.webhook_relay.sender import Sender, make_session
from services.webhook_relay.service import Deps
from services.webhook_relay.ssrf import UrlPolicy
from services.webhook_relay.store import SUBSCRIPTION, RelayStore
from shared.directory import Directory
from shared.eventstore.leadership import Leadership
from shared.eventstore.subscription import Subscription
from shared.runtime import Infra, Parts, run_service, session_dsn

log = logging.getLogger("webhook_relay")
POOL_SIZE = 4
STOP_GRACE = 5.0  # below the 10 s `make down` waits before SIGKILL


class Current:
    """The admin API's view of this process: Deps while active, None while standby."""

    deps: Deps | None = None


async def build(infra: Infra) -> Parts:
    settings = infra.settings
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
    # The runtime's pool is small (POOL_SIZE): a delivery holds a connection only for its
    # short queries, never across the HTTP call, and every stack shares the database
    # server's connection limit.
    pool = infra.pool
    relay = RelayStore(pool)
    events = infra.store
    session = make_session(url_policy)
    infra.closers.append(session.close)
    sender = Sender(session, url_policy, settings.webhook_timeout)
    # Whose events are whose (a number's business), kept fresh like every service's copy.
    directory = Directory(settings, pool)
    await directory.start()
    infra.closers.append(directory.stop)
    base = Deps(
        relay=relay,
        events=events,
        policy=url_policy,
        resolver=ThreadedResolver(),
        secret_grace=timedelta(seconds=settings.webhook_secret_grace_seconds),
        directory=directory,
    )
    current = Current()

    async def active() -> None:
        """The relay's work while this process holds the lock; rebuilt from the database
        every time it (re)gains it."""
        log.info("active relay")
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
            SUBSCRIPTION,
            FanOut(relay, dispatcher.enqueued, directory=directory),
            pool,
            poll_interval=settings.webhook_poll_interval,
            mapper=events.mapper,
            types=catalogue.BY_SOURCE,  # what CRMs can get; the rest passes unopened
        )
        dispatching = asyncio.create_task(dispatcher.run())
        measuring = asyncio.create_task(gauges.run(pool))
        following: asyncio.Task[None] | None = None
        try:
            await dispatcher.loaded.wait()
            current.deps = deps
            following = asyncio.create_task(subscription.follow())
            await asyncio.gather(dispatching, following)
        finally:
            current.deps = None
            for task in (following, dispatching, measuring):
                if task is not None:
                    task.cancel()
            await dispatcher.stop(STOP_GRACE)

    # One active relay: the subscription's lock also guards the dispatcher, so a standby
    # neither reads the log nor sends. The lock's own session carries the pool's name.
    dsn = session_dsn(settings.database_url, "webhook_relay")
    leadership = Leadership(dsn, SUBSCRIPTION, active)

    async def leading() -> tuple[bool, str]:
        # A standby answers 503 with why (another relay holds the lock, lost the database).
        return current.deps is not None, leadership.reason

    app = web.Application(client_max_size=64 * 1024)
    setup_admin(app, lambda: current.deps, settings.admin_token)
    return Parts(app=app, tasks=[leadership.run], ready=[leading])


if __name__ == "__main__":
    # PostgreSQL only: its source is the event store and its queue is the deliveries table.
    run_service("webhook_relay", build, broker=False, pool_size=(1, POOL_SIZE))
