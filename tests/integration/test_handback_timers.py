"""The idle hand-back's timer on a real PostgreSQL: a row from the handoff on, moved by each
message of the customer or a person, gone at the release; the poller claims only the rows
idle long enough, each once until the re-fire period."""

from __future__ import annotations

import uuid

import asyncpg

from services.conversation import idle
from shared.events.conversation import (
    BotReplied,
    CustomerWrote,
    HandedOff,
    Released,
    conversation_stream,
)
from shared.eventstore import Event, RecordedEvent, new
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.subscription import Batch
from shared.schemas import HandBack


async def project(pool: asyncpg.Pool, *events: tuple[str, Event]) -> list[RecordedEvent]:
    """Append the events and project them in one transaction; returns them as recorded."""
    async with pool.acquire() as conn, conn.transaction():
        store = PostgresEventStore(conn=conn)
        recorded = []
        for stream, event in events:
            [appended] = await store.append(stream, [new(event)])
            found = await store.find(appended.event_id)
            assert found is not None
            recorded.append(found)
        await idle.project(Batch("test", recorded, conn))
    return recorded


async def row(pool: asyncpg.Pool, conversation: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT active_version, fired_at FROM conversation_handback_timers"
        " WHERE conversation_id = $1",
        conversation,
    )


# Every due row of the session's database (other tests' conversations too), so this test's
# are among them.
LIMIT = 1_000_000


def wrote(seq: int) -> CustomerWrote:
    return CustomerWrote(seq=seq, wamid=f"wamid.{uuid.uuid4().hex}", text="hi")


async def test_rows_follow_the_handoff_and_only_idle_ones_fire(pg_pool: asyncpg.Pool) -> None:
    held, bots, released = (f"100.{uuid.uuid4().hex[:10]}" for _ in range(3))
    earlier = await project(
        pg_pool,
        (conversation_stream(bots), wrote(0)),
        (
            conversation_stream(bots),
            BotReplied(seq=0, text="hello", in_reply_to="w", responder="bot", command_id="c1"),
        ),
        (conversation_stream(held), wrote(0)),
        (conversation_stream(held), HandedOff(request_id="r1", assignee="usr_a")),
        (conversation_stream(released), HandedOff(request_id="r2")),
        (conversation_stream(released), Released(request_id="r3")),
    )
    assert await row(pg_pool, bots) is None  # the bot's: no timer
    assert await row(pg_pool, released) is None
    first = await row(pg_pool, held)
    assert first is not None and first["active_version"] == 1
    # The customer writes to the person: the timer counts from it.
    earlier += await project(pg_pool, (conversation_stream(held), wrote(1)))
    moved = await row(pg_pool, held)
    assert moved is not None and moved["active_version"] == 2

    fired: list[HandBack] = []

    async def publish(command: HandBack) -> None:
        fired.append(command)

    # Not idle for an hour yet: nothing; idle for no time at all: claimed once.
    await idle.fire_due(pg_pool, publish, idle_seconds=3600, limit=LIMIT)
    assert [c for c in fired if c.conversation_id == held] == []
    await idle.fire_due(pg_pool, publish, idle_seconds=0.001, limit=LIMIT)
    await idle.fire_due(pg_pool, publish, idle_seconds=0.001, limit=LIMIT)
    assert [c for c in fired if c.conversation_id == held] == [
        HandBack(conversation_id=held, active_version=2)
    ]
    # The same events applied again (a rebuild, or the session stack's own reader of this
    # log): the fired row is not re-armed, nothing moves back, nothing is fired twice.
    claimed = await row(pg_pool, held)
    async with pg_pool.acquire() as conn:
        await idle.project(Batch("again", earlier, conn))
    assert await row(pg_pool, held) == claimed and await row(pg_pool, released) is None
    await idle.fire_due(pg_pool, publish, idle_seconds=0.001, limit=LIMIT)
    assert len([c for c in fired if c.conversation_id == held]) == 1
    # Again after the re-fire period (the publish may have been lost).
    await idle.fire_due(pg_pool, publish, idle_seconds=0.001, refire_seconds=0, limit=LIMIT)
    assert len([c for c in fired if c.conversation_id == held]) == 2
    # Released (by the idle timer or a person): the row goes.
    await project(pg_pool, (conversation_stream(held), Released(request_id="idle:2", by="idle")))
    assert await row(pg_pool, held) is None
