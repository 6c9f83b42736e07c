"""Composition root of the api: `python -m services.api`.

It serves `/v1` (app.py), runs its read models (projections/) and its dispatcher, each
under its own Leadership so that one instance of each is active across api processes."""

from __future__ import annotations

import asyncio

from services.api.app import make_app
from services.api.consistency import Consistency
from services.api.dispatcher import NAME as DISPATCHER
from services.api.dispatcher import dispatcher
from services.api.erasure import Eraser
from services.api.limits import Buckets
from services.api.media import MediaFiles
from services.api.projections import subscriptions
from services.api.relay import RelayClient
from services.api.routes import Deps
from services.api.writes import Idempotency
from shared.config import Settings
from shared.crypto import datakeys
from shared.crypto.secrets import MasterKey, SecretBox, SecretError
from shared.eventstore.leadership import Leadership
from shared.runtime import Infra, Parts, run_service, session_dsn

READ_MODELS = "api.read-models"
# Opened at start and never grown: the server's connections are shared (and the two
# leaderships hold one more each).
POOL = (3, 3)


async def build(infra: Infra) -> Parts:
    settings = infra.settings
    box = SecretBox(MasterKey(settings.master_key))
    consistency = Consistency(infra.pool, {})
    relay = RelayClient(
        settings.webhook_relay_url or settings.url_of("webhook_relay"), settings.admin_token
    )
    infra.closers.append(relay.close)
    read_models = subscriptions(infra.pool, consistency.committed, poll_interval=0.1)
    send = dispatcher(infra.pool, infra.bus, poll_interval=0.1)
    consistency.local.update(read_models)
    deps = Deps(
        settings=settings,
        pool=infra.pool,
        box=box,
        idempotency=Idempotency(box),
        consistency=consistency,
        buckets=Buckets(settings.api_rate_per_second, settings.api_burst),
        bus=infra.bus,
        relay=relay,
        media=MediaFiles(settings),
        sent=send.wake,
    )
    dsn = session_dsn(settings.database_url, "api")

    async def follow_read_models() -> None:
        await asyncio.gather(*(s.follow() for s in read_models.values()))

    projecting = Leadership(dsn, READ_MODELS, follow_read_models)
    dispatching = Leadership(dsn, DISPATCHER, send.follow)

    async def run_read_models() -> None:
        await projecting.run()

    async def run_dispatcher() -> None:
        await dispatching.run()

    tasks = [run_read_models, run_dispatcher]
    ring = datakeys.installed()
    if ring is not None:  # the MASTER_KEY is required (refuse): always, when serving
        tasks.append(Eraser(infra.pool, ring, box, settings).follow)
    return Parts(app=make_app(deps), tasks=tasks)


def refuse(settings: Settings) -> str | None:
    try:
        MasterKey(settings.master_key)
    except SecretError as exc:
        return f"MASTER_KEY is needed to seal numbers' secrets: {exc}"
    return None


if __name__ == "__main__":
    run_service("api", build, pool_size=POOL, refuse=refuse)
