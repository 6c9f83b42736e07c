"""Read your writes (services/api/consistency.py) against real PostgreSQL: a write waits for
the read models to pass its place in the log, or is answered 503; a lookup that missed
waits for them to reach the log's end, or gives up quietly."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.api.consistency import Consistency
from services.api.errors import ApiError
from shared.eventstore import NewEvent, Position, Unrecognised
from shared.eventstore.postgres import PostgresEventStore


async def test_a_read_model_that_never_gets_there_is_a_503_for_a_write_and_a_miss_gives_up(
    pg_pool: asyncpg.Pool,
) -> None:
    [appended] = await PostgresEventStore(pg_pool).append(
        f"consistency-{uuid.uuid4().hex}", [NewEvent(Unrecognised(type="Happened", data={}))]
    )
    row = await pg_pool.fetchrow(
        "SELECT transaction_id::text::bigint AS t FROM events WHERE global_position = $1",
        appended.global_position,
    )
    position = Position(row["t"], appended.global_position)
    consistency = Consistency(pg_pool, {})
    nobody = (f"test-nobody-{uuid.uuid4().hex[:8]}",)  # a read model with no checkpoint
    with pytest.raises(ApiError) as refused:
        await consistency.wait(position, nobody, within=0.05)
    assert refused.value.status == 503 and refused.value.code == "read_models_behind"
    assert await consistency.settle(nobody, within=0.05) is False
    # One that has passed it (told in this process, as a committed batch tells it).
    consistency.committed("test-there", position)
    await consistency.wait(position, ("test-there",), within=0.05)
    assert await consistency.passed(position, ("test-there",), within=0.05)
