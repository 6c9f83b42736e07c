"""The subscription: read the event store in order, turn each catalogue event into one delivery
per interested endpoint, and move the checkpoint in the same transaction.

It reads with `read_all(after=checkpoint)`, which never passes a row that commits later, and
polls: the poll is the source of truth, nothing depends on a notification arriving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from services.webhook_relay import metrics
from services.webhook_relay.catalogue import needs_conversation, to_public
from services.webhook_relay.domain import Endpoint
from services.webhook_relay.store import Head, NewDelivery, RelayStore, delivery_id_for, utcnow
from shared.eventstore import EventStore, RecordedEvent

log = logging.getLogger("webhook_relay.fanout")


async def conversations_of(events: list[RecordedEvent], store: EventStore) -> dict[str, str]:
    """Conversation ids of the streams whose events lack one (a media stream's later events),
    from the first event in the stream that has it."""
    found: dict[str, str] = {}
    for event in events:
        if event.stream in found or not needs_conversation(event):
            continue
        for earlier in await store.read_stream(event.stream):
            if earlier.data.get("conversation_id"):
                found[event.stream] = str(earlier.data["conversation_id"])
                break
    return found


def deliveries_for(
    events: list[RecordedEvent],
    endpoints: list[Endpoint],
    only_after_creation: bool = True,
    conversations: dict[str, str] | None = None,
) -> list[NewDelivery]:
    """Pure. An endpoint gets the catalogue events it subscribed to; from the live
    subscription only those recorded since it was created (older ones: replay since a time).
    `conversations`: from `conversations_of`, for events that do not carry their own."""
    rows: list[NewDelivery] = []
    for event in events:
        public = to_public(event, (conversations or {}).get(event.stream))
        if public is None:
            continue
        body: str | None = None
        for endpoint in endpoints:
            if not endpoint.enabled or endpoint.deleted or not endpoint.wants(public.type):
                continue
            if (
                only_after_creation
                and endpoint.created_at is not None
                and event.recorded_at < endpoint.created_at
            ):
                continue
            body = body or public.body()
            rows.append(
                NewDelivery(
                    delivery_id=delivery_id_for(endpoint.endpoint_id, public.id),
                    endpoint_id=endpoint.endpoint_id,
                    event_id=event.id,
                    event_type=public.type,
                    order_key=public.order_key,
                    position=event.position,
                    event_time=event.recorded_at,
                    body=body,
                )
            )
    return rows


class Subscription:
    def __init__(
        self,
        events: EventStore,
        relay: RelayStore,
        on_enqueued: Callable[[list[Head]], None],
        poll_interval: float,
        batch_size: int = 500,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.events = events
        self.relay = relay
        self.on_enqueued = on_enqueued
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.now = now
        self.caught_up = asyncio.Event()

    async def step(self) -> int:
        """One batch: returns how many events were read (0 when caught up)."""
        position = await self.relay.checkpoint()
        events = await self.events.read_all(after=position, limit=self.batch_size)
        if not events:
            self.caught_up.set()
            metrics.subscription_lag.set(0)
            return 0
        endpoints = await self.relay.list_endpoints(enabled_only=True)
        rows = deliveries_for(
            events, endpoints, conversations=await conversations_of(events, self.events)
        )
        heads = await self.relay.fan_out(rows, events[-1].position, self.now())
        metrics.events_read.inc(len(events))
        metrics.deliveries_enqueued.inc(len(heads))
        last = events[-1].recorded_at
        metrics.subscription_lag.set(max(0.0, time.time() - last.timestamp()))
        if heads:
            self.on_enqueued(heads)
        return len(events)

    async def run(self) -> None:
        while True:
            try:
                read = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Database away or a bad moment: nothing was committed, read the batch again.
                log.warning(
                    "subscription step failed; retrying",
                    extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300]}},
                )
                await asyncio.sleep(1.0)
                continue
            if read < self.batch_size:
                await asyncio.sleep(self.poll_interval)
