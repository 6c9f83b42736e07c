"""The fan-out: turn each catalogue event into one delivery per interested endpoint.

The relay follows the event store with the shared subscription runner
(`shared.eventstore.subscription`, name `webhook-relay`, over `read_all`): the runner reads in
order, never passes a row that commits later, polls, and moves the checkpoint in the same
transaction as the deliveries `FanOut` inserts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from services.webhook_relay import metrics
from services.webhook_relay.catalogue import needs_conversation, to_public
from services.webhook_relay.domain import DEFAULT_BUSINESS, Endpoint
from services.webhook_relay.owner import Directory, owners_of
from services.webhook_relay.store import Head, NewDelivery, RelayStore, delivery_id_for, utcnow
from shared.eventstore import EventStore, RecordedEvent
from shared.eventstore.subscription import Batch


async def conversations_of(events: list[RecordedEvent], store: EventStore) -> dict[str, str]:
    """Conversation ids of the streams whose events lack one (a media stream's later events),
    from the first event in the stream that has it."""
    found: dict[str, str] = {}
    for event in events:
        if event.stream in found or not needs_conversation(event):
            continue
        for earlier in await store.read_stream(event.stream):
            cid = getattr(earlier.event, "conversation_id", "")
            if cid:
                found[event.stream] = str(cid)
                break
    return found


def deliveries_for(
    events: list[RecordedEvent],
    endpoints: list[Endpoint],
    only_after_creation: bool = True,
    conversations: dict[str, str] | None = None,
    owners: Mapping[uuid.UUID, str | None] | None = None,
) -> list[NewDelivery]:
    """Pure. An endpoint gets the catalogue events of its business it subscribed to; from
    the live subscription only those recorded since it was created (older ones: replay since
    a time). `conversations`: from `conversations_of`, for events that do not carry their
    own; `owners`: each event's business, from `owners_of` (absent: every event is the
    default business's; an event missing from it or None: nobody's, sent nowhere)."""
    rows: list[NewDelivery] = []
    for event in events:
        public = to_public(event, (conversations or {}).get(event.stream))
        if public is None:
            continue
        owner = DEFAULT_BUSINESS if owners is None else owners.get(event.id)
        if owner is None:
            continue
        body: str | None = None
        for endpoint in endpoints:
            if endpoint.business_id != owner:
                continue
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


class FanOut:
    """The relay's subscriber (shared/eventstore/subscription.py): one delivery per interested
    endpoint for each catalogue event, inserted in the batch's transaction, so the deliveries
    and the checkpoint commit together. Delivery ids are deterministic, so a batch read again
    inserts nothing twice."""

    def __init__(
        self,
        relay: RelayStore,
        on_enqueued: Callable[[list[Head]], None],
        now: Callable[[], datetime] = utcnow,
        directory: Directory | None = None,
    ) -> None:
        self.relay = relay
        self.on_enqueued = on_enqueued
        self.now = now
        self.directory = directory  # None: every event is the default business's

    async def __call__(self, batch: Batch) -> None:
        if not batch.events:
            return  # only events of no catalogue type were passed
        endpoints = await self.relay.list_endpoints(enabled_only=True, conn=batch.conn)
        if not endpoints:
            return  # nobody to send to: no lookups (the checkpoint moves all the same)
        conversations = await conversations_of(batch.events, batch.store)
        rows = deliveries_for(
            batch.events,
            endpoints,
            conversations=conversations,
            owners=await owners_of(batch.events, self.directory, conversations),
        )
        heads = await self.relay.enqueue(batch.conn, rows, self.now())
        # The dispatcher hears of them only once they are committed.
        batch.on_commit(lambda: self._enqueued(heads))

    def _enqueued(self, heads: list[Head]) -> None:
        metrics.deliveries_enqueued.inc(len(heads))
        if heads:
            self.on_enqueued(heads)
