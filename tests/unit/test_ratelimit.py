"""Per-number token bucket. Only lower bounds on time: the limiter must never be faster."""

from __future__ import annotations

import asyncio
import time

from services.outbound.ratelimit import RateLimiter


async def settle() -> None:
    """Let every task that can run without sleeping run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_burst_passes_at_once_and_the_next_waits() -> None:
    limiter = RateLimiter(rate_per_second=5, burst=3)
    tasks = [asyncio.create_task(limiter.acquire("pn")) for _ in range(4)]
    await settle()
    assert [t.done() for t in tasks] == [True, True, True, False]
    # Another number has its own bucket.
    other = [asyncio.create_task(limiter.acquire("other")) for _ in range(3)]
    await settle()
    assert all(t.done() for t in other)
    await tasks[3]


async def test_acquisitions_beyond_the_burst_follow_the_rate() -> None:
    rate, burst, extra = 20.0, 3, 4
    limiter = RateLimiter(rate_per_second=rate, burst=burst)
    started = time.monotonic()
    for _ in range(burst + extra):
        await limiter.acquire("pn")
    elapsed = time.monotonic() - started
    assert elapsed >= extra / rate - 1e-3


async def test_concurrent_acquisitions_respect_the_rate() -> None:
    rate, burst, extra = 25.0, 2, 5
    limiter = RateLimiter(rate_per_second=rate, burst=burst)
    done: list[float] = []
    started = time.monotonic()

    async def one() -> None:
        await limiter.acquire("pn")
        done.append(time.monotonic() - started)

    await asyncio.gather(*(one() for _ in range(burst + extra)))
    done.sort()
    # The k-th acquisition beyond the burst cannot come before k / rate seconds.
    for k in range(1, extra + 1):
        assert done[burst + k - 1] >= k / rate - 1e-3


async def test_default_burst_is_the_rate() -> None:
    limiter = RateLimiter(rate_per_second=4)
    tasks = [asyncio.create_task(limiter.acquire("pn")) for _ in range(5)]
    await settle()
    assert [t.done() for t in tasks] == [True] * 4 + [False]
    await tasks[4]
