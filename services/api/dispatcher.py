"""The dispatcher: every accepted message (MessageRequested, stream `request-<id>`) goes to
the conversation stage as SendBusinessMessage, routed by its conversation id, so that the
conversation records it in the customer's order and sends it once, under the message id.

A subscription over the `request` category, run on one instance at a time (Leadership).
Each batch is published with confirms inside the batch's transaction, so its checkpoint
moves only after the broker has every message: a crash or an outage before that publishes
the batch again (at least once; the conversation sends each message id once).
"""

from __future__ import annotations

import asyncio

import asyncpg

from shared.broker.bus import Bus
from shared.crypto.erased import sendable
from shared.events.business import MessageRequested
from shared.eventstore.subscription import Batch, Subscription
from shared.schemas import SendBusinessMessage

NAME = "api.dispatcher"
CATEGORY = "request"
STAGE = "conversation"


def command(event: MessageRequested) -> SendBusinessMessage:
    return SendBusinessMessage(
        message_id=event.message_id,
        business_id=event.business_id,
        conversation_id=event.conversation_id,
        phone_number_id=event.phone_number_id,
        to=event.address or sendable(event.to),
        message_type=event.type,
        payload=event.payload,
        author=event.author,
        actor=event.actor,
    )


def dispatcher(pool: asyncpg.Pool, bus: Bus, poll_interval: float = 0.2) -> Subscription:
    async def dispatch(batch: Batch) -> None:
        requests = [r.event for r in batch.events if isinstance(r.event, MessageRequested)]
        # Many in flight at once: confirms awaited one by one top out at a few hundred/s.
        await asyncio.gather(
            *(
                bus.publish(
                    STAGE,
                    e.conversation_id,
                    command(e),
                    headers={"x-correlation-id": e.message_id},
                )
                for e in requests
            )
        )

    return Subscription(
        NAME, dispatch, pool, category=CATEGORY, batch_size=200, poll_interval=poll_interval
    )
