"""Composition root of dedup: `python -m services.dedup`."""

from __future__ import annotations

from services.dedup.handlers import record_delivery
from shared.broker.bus import Context, Publish, Service
from shared.runtime import Infra, run_consumer_service
from shared.schemas import WebhookDelivery


async def build(infra: Infra) -> Service:
    service = Service("dedup")

    @service.handles(WebhookDelivery)
    async def on_delivery(delivery: WebhookDelivery, ctx: Context) -> list[Publish]:
        return await record_delivery(infra.store, delivery, ctx)

    return service


if __name__ == "__main__":
    run_consumer_service("dedup", build)
