"""The conversation's flow timer on a real PostgreSQL: the projection keeps a row while a
conversation is in a flow with a deadline and drops it when the flow ends; the poller claims
only due rows, each once until the re-fire period, and two pollers at once never claim the
same row."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from services.conversation import timers
from shared.events.conversation import BotStateChanged, FlowTimedOut, conversation_stream
from shared.eventstore import new
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.subscription import Batch
from shared.schemas import FlowTimeout


async def project(pool: asyncpg.Pool, *events: tuple[str, object]) -> None:
    """The events through the projection, in one batch, as the subscription hands them."""
    async with pool.acquire() as conn, conn.transaction():
        store = PostgresEventStore(conn=conn)
        recorded = []
        for stream, event in events:
            [appended] = await store.append(stream, [new(event)])  # type: ignore[arg-type]
            found = await store.find(appended.event_id)
            assert found is not None
            recorded.append(found)
        await timers.project(Batch("test", recorded, conn))


async def deadline_of(pool: asyncpg.Pool, conversation: str) -> float | None:
    return await pool.fetchval(
        "SELECT deadline FROM conversation_bot_timers WHERE conversation_id = $1", conversation
    )


def state(flow: str, deadline: float) -> dict[str, object]:
    return {"flow": flow, "step": "order", "deadline": deadline}


async def test_rows_follow_the_flow_and_only_due_ones_fire_once(pg_pool: asyncpg.Pool) -> None:
    due, later, ended = (f"100.{uuid.uuid4().hex[:10]}" for _ in range(3))
    now = time.time()
    await project(
        pg_pool,
        (conversation_stream(due), BotStateChanged(seq=0, state=state("support", now - 5))),
        (conversation_stream(later), BotStateChanged(seq=0, state=state("support", now + 3600))),
        (conversation_stream(ended), BotStateChanged(seq=0, state=state("support", now - 5))),
        (conversation_stream(ended), BotStateChanged(seq=1, state=state("", 0))),
    )
    assert await deadline_of(pg_pool, due) == now - 5
    assert await deadline_of(pg_pool, later) == now + 3600
    assert await deadline_of(pg_pool, ended) is None  # the batch's last word: flow over

    fired: list[FlowTimeout] = []

    async def publish(command: FlowTimeout) -> None:
        fired.append(command)

    await timers.fire_due(pg_pool, publish)
    mine = [c for c in fired if c.conversation_id in (due, later, ended)]
    assert mine == [FlowTimeout(conversation_id=due, deadline=now - 5)]
    # Claimed: not again within the re-fire period...
    fired.clear()
    await timers.fire_due(pg_pool, publish)
    assert [c for c in fired if c.conversation_id == due] == []
    # ...but again after it (the first publish may have been lost).
    await timers.fire_due(pg_pool, publish, refire_seconds=0)
    assert [c.conversation_id for c in fired if c.conversation_id == due] == [due]
    # The conversation ends the flow: the row goes.
    await project(
        pg_pool,
        (conversation_stream(due), FlowTimedOut(seq=0, deadline=now - 5, state=state("", 0))),
    )
    assert await deadline_of(pg_pool, due) is None
    # A new deadline in a new flow re-arms it, unclaimed.
    await project(
        pg_pool, (conversation_stream(due), BotStateChanged(seq=2, state=state("f", now - 1)))
    )
    fired.clear()
    await timers.fire_due(pg_pool, publish)
    assert [c.deadline for c in fired if c.conversation_id == due] == [now - 1]


async def test_two_pollers_at_once_claim_each_row_once(pg_pool: asyncpg.Pool) -> None:
    now = time.time()
    ids = [f"200.{uuid.uuid4().hex[:10]}" for _ in range(50)]
    await project(
        pg_pool,
        *((conversation_stream(c), BotStateChanged(seq=0, state=state("f", now - 1))) for c in ids),
    )
    fired: list[str] = []

    async def publish(command: FlowTimeout) -> None:
        fired.append(command.conversation_id)

    await asyncio.gather(*(timers.fire_due(pg_pool, publish) for _ in range(4)))
    mine = [c for c in fired if c in ids]
    assert sorted(mine) == sorted(ids)  # every one, once
