"""Composition root of dedup: `python -m services.dedup`."""

from __future__ import annotations

from services.dedup.handlers import deps_for, record_delivery
from services.dedup.identity import Epochs, never_erased
from shared.broker.bus import Context, Publish, Service
from shared.crypto import datakeys, erased
from shared.directory import Directory
from shared.eventstore.postgres import connection
from shared.runtime import Infra, Parts, run_service
from shared.schemas import WebhookDelivery


def epochs_of(infra: Infra) -> Epochs:
    """Erasures of customers, from `erased_ids` (with the deployment's pseudonym key)."""
    ring = datakeys.installed()
    if ring is None:  # no MASTER_KEY: no erasure can have happened
        return never_erased

    async def epochs(business_id: str, ids: list[str]) -> int:
        # Through connection(): the database away must be an outage the message waits out in
        # its lane; as any other failure it would be retried off its lane, and the
        # customer's next message recorded before it (seen in a PostgreSQL restart).
        async with connection(infra.pool) as conn:
            return await erased.epoch(conn, ring, business_id, ids)

    return epochs


async def build(infra: Infra) -> Parts:
    directory = Directory(infra.settings, infra.pool)
    await directory.start()
    infra.closers.append(directory.stop)
    deps = deps_for(infra.store, directory, epochs_of(infra))
    service = Service("dedup")

    @service.handles(WebhookDelivery)
    async def on_delivery(delivery: WebhookDelivery, ctx: Context) -> list[Publish]:
        return await record_delivery(deps, delivery, ctx)

    return Parts(consumers=[service])


if __name__ == "__main__":
    run_service("dedup", build)
