"""Composition root of ingress: `python -m services.ingress`.

Ready when it can publish: nothing else is on the webhook's path. The directory (which
Meta apps may sign a delivery) is read from the database in the background, through a small
pool of its own; while the database is away, ingress goes on with the copy it has."""

from __future__ import annotations

from services.ingress.app import create_app
from shared.config import Settings
from shared.directory import Directory
from shared.eventstore.postgres import create_pool
from shared.runtime import Infra, Parts, run_service, session_dsn


def refuse(settings: Settings) -> str | None:
    # Never run without verifying signatures.
    return None if settings.whatsapp_app_secret else "WHATSAPP_APP_SECRET is not set"


async def build(infra: Infra) -> Parts:
    settings = infra.settings
    # min_size 0: no connection is needed to start, nor kept while idle.
    pool = await create_pool(session_dsn(settings.database_url, "ingress"), min_size=0, max_size=2)
    infra.closers.append(pool.close)
    directory = Directory(settings, pool)
    infra.closers.append(directory.stop)
    return Parts(app=create_app(settings, infra.bus, directory), tasks=[directory.start_following])


if __name__ == "__main__":
    run_service("ingress", build, database=False, refuse=refuse)
