"""Per-key token buckets (API_RATE_PER_SECOND, API_BURST) and the per-business daily send
quota. The buckets live in this process: with several api instances each allows the rate."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg

from services.api.errors import ApiError

MAX_BUCKETS = 100_000


class Buckets:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when a request may go now, else the seconds until it may."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate if self.rate > 0 else 60.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)  # the longest idle: it would be full again
        return wait

    def check(self, key: str) -> None:
        wait = self.take(key)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.rate:g} requests per second with this key",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )


def today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).date()


async def count_send(conn: asyncpg.Connection, business_id: str, quota: int | None) -> None:
    """Counts one send against today's quota, in the caller's transaction; 429 when the
    quota is spent (the row lock orders concurrent sends of one business)."""
    if quota is None:
        return
    day = today()
    sent = await conn.fetchval(
        "INSERT INTO api_send_counts (business_id, day, sent) VALUES ($1, $2, 1)"
        " ON CONFLICT (business_id, day) DO UPDATE SET sent = api_send_counts.sent + 1"
        " RETURNING sent",
        business_id,
        day,
    )
    if sent > quota:
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        wait = max(1, math.ceil((midnight - datetime.now(UTC)).total_seconds()))
        raise ApiError(
            429,
            "quota_exceeded",
            f"the business's daily send quota ({quota}) is spent until 00:00 UTC",
            {"Retry-After": str(wait)},
        )
