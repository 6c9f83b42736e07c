"""Per-number token bucket: never send faster than Meta allows a business number."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: float | None = None) -> None:
        self.rate = rate_per_second
        self.burst = burst if burst is not None else max(1.0, rate_per_second)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated_at)
        self._lock = asyncio.Lock()

    async def acquire(self, key: str) -> None:
        while True:
            async with self._lock:
                now = time.monotonic()
                tokens, updated = self._buckets.get(key, (self.burst, now))
                tokens = min(self.burst, tokens + (now - updated) * self.rate)
                if tokens >= 1.0:
                    self._buckets[key] = (tokens - 1.0, now)
                    return
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            await asyncio.sleep(wait)
