"""Per-number send budgets: never send faster than Meta allows a business number.

Two backends with one interface (`acquire(key, rate)` waits until a send may go): the shared
one for the service, in PostgreSQL, so that any number of outbound instances together keep
a number's rate; the in-process one for tests and tools that run a single sender."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import asyncpg

from shared.eventstore.postgres import connection


class Limiter(Protocol):
    async def acquire(self, key: str, rate: float | None = None) -> None: ...


class RateLimiter:
    """A token bucket per key (a number), in this process only, with one second of burst by
    default. Each key's rate is the default one unless `acquire` names its own."""

    def __init__(self, rate_per_second: float, burst: float | None = None) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)
        self._lock = asyncio.Lock()

    async def acquire(self, key: str, rate: float | None = None) -> None:
        rate = rate or self.rate
        burst = self.burst if self.burst is not None else max(1.0, rate)
        while True:
            async with self._lock:
                now = time.monotonic()
                tokens, updated = self._buckets.get(key, (burst, now))
                tokens = min(burst, tokens + (now - updated) * rate)
                if tokens >= 1.0:
                    self._buckets[key] = (tokens - 1.0, now)
                    return
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / rate
            await asyncio.sleep(wait)


class SharedRateLimiter:
    """Every instance's sends from a number draw on one budget (`reserve_send`, migration
    0018): one round trip reserves the next slot, then the caller waits for it without
    holding anything. With the default burst of one, sends from a number are spaced 1/rate
    apart, so no one-second window at Meta ever holds more than the number's rate."""

    def __init__(self, pool: asyncpg.Pool, rate_per_second: float, burst: float = 1.0) -> None:
        self.pool = pool
        self.rate = rate_per_second
        self.burst = max(1.0, burst)

    async def acquire(self, key: str, rate: float | None = None) -> None:
        interval = 1.0 / (rate or self.rate)
        async with connection(self.pool) as conn:
            wait = await conn.fetchval(
                "SELECT reserve_send($1, $2, $3)", key, interval, (self.burst - 1.0) * interval
            )
        if wait > 0:
            await asyncio.sleep(wait)
