"""The send budget that outbound instances share, in real PostgreSQL: one number's sends are
spaced by its rate whatever the number of instances (pools) drawing on it; numbers are
independent. Only lower bounds on time: the budget must never let a send go early."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from services.outbound.ratelimit import SharedRateLimiter
from shared.eventstore.postgres import create_pool


async def test_reservations_queue_one_interval_apart_and_keys_are_apart(
    pg_pool: asyncpg.Pool,
) -> None:
    key, other = f"pn-{uuid.uuid4().hex}", f"pn-{uuid.uuid4().hex}"
    waits, before, after = [], [], []
    for _ in range(4):
        before.append(time.monotonic())
        waits.append(await pg_pool.fetchval("SELECT reserve_send($1, 1.0, 0)", key))
        after.append(time.monotonic())
    assert waits[0] == 0
    for k in range(1, 4):
        # Slot k is k seconds after slot 0; the wait is that less the time passed between
        # the two calls, which the clocks around them bound (however slow the machine).
        assert k - (after[k] - before[0]) - 1e-3 <= waits[k] <= k - (before[k] - after[0]) + 1e-3
    # Another number's budget is untouched by this one's queue.
    assert await pg_pool.fetchval("SELECT reserve_send($1, 1.0, 0)", other) == 0
    # A tolerance lets that many intervals of burst through at once.
    burst = [await pg_pool.fetchval("SELECT reserve_send($1, 1.0, 2.0)", other) for _ in range(2)]
    assert burst == [0, 0]


async def test_two_instances_together_keep_one_rate(database_url: str) -> None:
    """Two limiters on two pools (two outbound processes, as far as the database can tell)
    sending from one number: the k-th send of all of them cannot come before k / rate."""
    rate, sends = 40.0, 24
    key = f"pn-{uuid.uuid4().hex}"
    pools = [await create_pool(database_url, min_size=1, max_size=4) for _ in range(2)]
    try:
        limiters = [SharedRateLimiter(pool, rate) for pool in pools]
        started = time.monotonic()
        done: list[float] = []

        async def send(limiter: SharedRateLimiter) -> None:
            await limiter.acquire(key)
            done.append(time.monotonic() - started)

        await asyncio.gather(*(send(limiters[i % 2]) for i in range(sends)))
    finally:
        for pool in pools:
            await pool.close()
    done.sort()
    for k, at in enumerate(done):
        assert at >= k / rate - 5e-3, (k, at)
    # One process alone would have been twice as fast had each kept its own budget.
    assert done[-1] >= (sends - 1) / rate - 5e-3


async def test_a_number_of_its_own_rate(pg_pool: asyncpg.Pool) -> None:
    """acquire(key, rate) spaces by the number's configured rate, not the default."""
    limiter = SharedRateLimiter(pg_pool, rate_per_second=1000.0)
    key = f"pn-{uuid.uuid4().hex}"
    started = time.monotonic()
    for _ in range(4):
        await limiter.acquire(key, rate=20.0)
    assert time.monotonic() - started >= 3 / 20.0 - 5e-3


async def test_a_reservation_does_not_wait_for_the_wal_flush(pg_pool: asyncpg.Pool) -> None:
    """Its transaction commits asynchronously (a pacing hint, not a record), and only its
    own: the connection's next transaction is durable again."""
    key = f"pn-{uuid.uuid4().hex}"
    async with pg_pool.acquire() as conn:
        async with conn.transaction():
            await conn.fetchval("SELECT reserve_send($1, 1.0, 0)", key)
            assert await conn.fetchval("SELECT current_setting('synchronous_commit')") == "off"
        assert await conn.fetchval("SELECT current_setting('synchronous_commit')") == "on"
