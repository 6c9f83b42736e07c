"""Endpoint states and backlogs as gauges, read from the relay's tables while active."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from services.webhook_relay import metrics

log = logging.getLogger("webhook_relay")


async def refresh(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        states = await conn.fetch(
            "SELECT enabled, count(*) AS n FROM webhook_endpoints WHERE NOT deleted"
            " GROUP BY enabled"
        )
        waiting = await conn.fetch(
            "SELECT endpoint_id, state, count(*) AS n FROM webhook_deliveries"
            " WHERE state IN ('pending', 'dead') GROUP BY endpoint_id, state"
        )
    counts = {bool(r["enabled"]): int(r["n"]) for r in states}
    metrics.endpoints.labels("enabled").set(counts.get(True, 0))
    metrics.endpoints.labels("disabled").set(counts.get(False, 0))
    # Endpoints deleted or drained since the last round must not keep their old value.
    metrics.backlog.clear()
    metrics.dead.clear()
    for row in waiting:
        gauge = metrics.backlog if row["state"] == "pending" else metrics.dead
        gauge.labels(row["endpoint_id"]).set(int(row["n"]))


async def run(pool: asyncpg.Pool, every: float = 5.0) -> None:
    while True:
        try:
            await refresh(pool)
        except Exception as exc:  # database away: the next round tries again
            log.warning("gauges not refreshed", extra={"fields": {"error": type(exc).__name__}})
        await asyncio.sleep(every)
