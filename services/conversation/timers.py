"""Flow time-outs on a durable timer: a flow's `timeout_message` reaches a customer who
stopped answering, without waiting for their next message (bot-v1: "no answer for this long:
the flow ends with `timeout_message`").

- A subscription over the conversation streams keeps `conversation_bot_timers` (migration
  0010): a row while a conversation is in a flow with a deadline (BotStateChanged), none
  once the flow has ended (BotStateChanged, FlowTimedOut). The rows commit with the
  subscription's checkpoint, so a crash loses nothing and they can be rebuilt from events.
- A poller claims the due rows (`fired_at` set, SKIP LOCKED) and publishes FlowTimeout to the
  conversation stage, routed by the conversation like its messages, so it is handled in
  the conversation's order. A claim whose publish was lost is claimed again after
  REFIRE_SECONDS; handling is idempotent (the flow ends once, its events have fixed ids).
- Both run on one instance at a time (Leadership). A time-out is late by at most the poll
  interval plus the subscription's lag (about a second and a half), never early.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from shared.broker.bus import Bus
from shared.events.conversation import BotStateChanged, FlowTimedOut
from shared.eventstore import stream_id
from shared.eventstore.subscription import Batch, Subscription
from shared.schemas import FlowTimeout

log = logging.getLogger("conversation.timers")
NAME = "conversation.bot_timers"
CATEGORY = "conversation"
STAGE = "conversation"
POLL_SECONDS = 1.0
REFIRE_SECONDS = 30.0
CLAIM = 200

_SET = """
INSERT INTO conversation_bot_timers (conversation_id, deadline, fired_at) VALUES ($1, $2, NULL)
ON CONFLICT (conversation_id) DO UPDATE SET deadline = EXCLUDED.deadline, fired_at = NULL
"""
# Due now (by the database's clock, the one every instance shares), not claimed within
# REFIRE_SECONDS; claimed in the same statement.
_CLAIM = """
UPDATE conversation_bot_timers t SET fired_at = clock_timestamp()
FROM (SELECT conversation_id FROM conversation_bot_timers
      WHERE deadline <= extract(epoch FROM clock_timestamp())
        AND (fired_at IS NULL OR fired_at < clock_timestamp() - make_interval(secs => $2))
      ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED) due
WHERE t.conversation_id = due.conversation_id
RETURNING t.conversation_id, t.deadline
"""


def deadline_of(state: dict[str, object]) -> float:
    """The deadline a bot state sets (0: none, or not in a flow)."""
    deadline = state.get("deadline") or 0
    return float(deadline) if state.get("flow") and isinstance(deadline, int | float) else 0.0


async def project(batch: Batch) -> None:
    latest: dict[str, float] = {}  # the batch's last word per conversation
    for recorded in batch.events:
        event = recorded.event
        if isinstance(event, BotStateChanged | FlowTimedOut):
            latest[stream_id(recorded.stream)] = deadline_of(event.state)
    for conversation_id, deadline in latest.items():
        if deadline:
            await batch.conn.execute(_SET, conversation_id, deadline)
        else:
            await batch.conn.execute(
                "DELETE FROM conversation_bot_timers WHERE conversation_id = $1", conversation_id
            )


def subscription(pool: asyncpg.Pool) -> Subscription:
    return Subscription(NAME, project, pool, category=CATEGORY, poll_interval=0.5, durable=False)


Publisher = Callable[[FlowTimeout], Awaitable[None]]


async def fire_due(
    pool: asyncpg.Pool, publish: Publisher, refire_seconds: float = REFIRE_SECONDS
) -> int:
    """Claim every due timer and publish its FlowTimeout; returns how many."""
    rows = await pool.fetch(_CLAIM, CLAIM, refire_seconds)
    await asyncio.gather(
        *(
            publish(FlowTimeout(conversation_id=r["conversation_id"], deadline=r["deadline"]))
            for r in rows
        )
    )
    return len(rows)


def to_conversation(bus: Bus) -> Publisher:
    """FlowTimeout to the conversation stage, routed like the conversation's messages."""

    async def publish(command: FlowTimeout) -> None:
        await bus.publish(STAGE, command.conversation_id, command)

    return publish


async def run(pool: asyncpg.Pool, bus: Bus, poll_seconds: float = POLL_SECONDS) -> None:
    """The timer's active work (under Leadership): the subscription and the poller."""
    publish = to_conversation(bus)

    async def poll() -> None:
        while True:
            try:
                await fire_due(pool, publish)
            except Exception as exc:
                # The database or broker away: the rows wait, claimed again later.
                log.warning(
                    "flow timers not fired", extra={"fields": {"error": type(exc).__name__}}
                )
            await asyncio.sleep(poll_seconds)  # the timer's cadence

    await asyncio.gather(subscription(pool).follow(), poll())
