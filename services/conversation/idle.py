"""The idle hand-back on a durable timer: a conversation a person has (taken over, or
waiting for one) goes back to the bot after its business's idle time (`PUT
/v1/handoff/settings`, else HANDBACK_IDLE_SECONDS; 0: never) in which nobody wrote,
with a `Released` by `idle` (an explicit release has its own).

The same pattern as the flow timers (timers.py):
- a subscription over the conversation streams keeps `conversation_handback_timers`
  (migration 0020): a row from the handoff on, its last activity's time and stream version
  moved by each customer or person's message, gone at the release, the close or a reopen;
- a poller claims the rows idle long enough (by the database's clock) and publishes
  HandBack to the conversation stage, in the conversation's order; the conversation
  releases only if nothing happened after that version (the timer may be behind), once
  per idle spell (the request id names the version). A lost publish is claimed again after
  REFIRE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.conversation.domain import ACTIVITY
from shared.broker.bus import Bus
from shared.events.conversation import Closed, HandedOff, Released, Reopened
from shared.eventstore import stream_id
from shared.eventstore.subscription import Batch, Subscription
from shared.schemas import HandBack

log = logging.getLogger("conversation.idle")
NAME = "conversation.handback_timers"
CATEGORY = "conversation"
STAGE = "conversation"
POLL_SECONDS = 1.0
REFIRE_SECONDS = 30.0
CLAIM = 200

# Each only moves a row forward (a newer stream version), so that an event applied again
# (a rebuild, a second reader of the same log) neither moves the timer back nor re-arms one
# that has fired.
_HANDED = """
INSERT INTO conversation_handback_timers (conversation_id, active_at, active_version, fired_at)
VALUES ($1, $2, $3, NULL) ON CONFLICT (conversation_id) DO UPDATE
SET active_at = EXCLUDED.active_at, active_version = EXCLUDED.active_version, fired_at = NULL
WHERE conversation_handback_timers.active_version < EXCLUDED.active_version
"""
_ACTIVE = """
UPDATE conversation_handback_timers SET active_at = $2, active_version = $3, fired_at = NULL
WHERE conversation_id = $1 AND active_version < $3
"""
_GONE = """
DELETE FROM conversation_handback_timers WHERE conversation_id = $1 AND active_version < $2
"""
# The idle time is the business's own (handoff_settings) or the deployment's ($2); 0: never.
# The business is the number's: the conversation id starts with it.
_CLAIM = """
UPDATE conversation_handback_timers t SET fired_at = clock_timestamp()
FROM (SELECT i.conversation_id
        FROM conversation_handback_timers i
        LEFT JOIN directory_numbers n ON n.phone_number_id = split_part(i.conversation_id, '.', 1)
        LEFT JOIN handoff_settings h ON h.business_id = n.business_id
       WHERE COALESCE(h.idle_seconds::float8, $2::float8) > 0
         AND i.active_at <= clock_timestamp()
             - make_interval(secs => COALESCE(h.idle_seconds::float8, $2::float8))
         AND (i.fired_at IS NULL OR i.fired_at < clock_timestamp() - make_interval(secs => $3))
       ORDER BY i.active_at LIMIT $1 FOR UPDATE OF i SKIP LOCKED) due
WHERE t.conversation_id = due.conversation_id
RETURNING t.conversation_id, t.active_version
"""


_ANY_IDLE = "SELECT EXISTS (SELECT 1 FROM handoff_settings WHERE idle_seconds > 0)"


async def project(batch: Batch) -> None:
    for recorded in batch.events:
        event, conversation = recorded.event, stream_id(recorded.stream)
        if isinstance(event, Released | Closed | Reopened):
            await batch.conn.execute(_GONE, conversation, recorded.version)
        elif isinstance(event, ACTIVITY):
            # A handoff starts the row; other activity only moves an existing one (the bot's).
            query = _HANDED if isinstance(event, HandedOff) else _ACTIVE
            await batch.conn.execute(query, conversation, recorded.recorded_at, recorded.version)


def subscription(pool: asyncpg.Pool) -> Subscription:
    return Subscription(NAME, project, pool, category=CATEGORY, poll_interval=0.5, durable=False)


Publisher = Callable[[HandBack], Awaitable[None]]


async def fire_due(
    pool: asyncpg.Pool,
    publish: Publisher,
    idle_seconds: float,
    refire_seconds: float = REFIRE_SECONDS,
    limit: int = CLAIM,
) -> int:
    """Claim every conversation idle for its business's time (or `idle_seconds`) and
    publish its HandBack."""
    rows = await pool.fetch(_CLAIM, limit, idle_seconds, refire_seconds)
    await asyncio.gather(
        *(
            publish(
                HandBack(conversation_id=r["conversation_id"], active_version=r["active_version"])
            )
            for r in rows
        )
    )
    return len(rows)


def to_conversation(bus: Bus) -> Publisher:
    async def publish(command: HandBack) -> None:
        await bus.publish(STAGE, command.conversation_id, command)

    return publish


async def run(
    pool: asyncpg.Pool, bus: Bus, idle_seconds: float, poll_seconds: float = POLL_SECONDS
) -> None:
    """The timer's active work (under Leadership): the subscription and the poller."""
    publish = to_conversation(bus)

    async def poll() -> None:
        while True:
            try:
                # Nobody hands back by idling (the deployment's default and every business's
                # off): no claim to scan the timers for.
                if idle_seconds > 0 or await pool.fetchval(_ANY_IDLE):
                    await fire_due(pool, publish, idle_seconds)
            except Exception as exc:
                log.warning(
                    "idle hand-backs not fired", extra={"fields": {"error": type(exc).__name__}}
                )
            await asyncio.sleep(poll_seconds)  # the timer's cadence

    await asyncio.gather(subscription(pool).follow(), poll())
