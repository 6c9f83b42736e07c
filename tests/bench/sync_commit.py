"""What synchronous replication costs a commit: the same small transactions (one event-sized
row each) on a primary with a streaming replica, with the commit waiting for the replica
(`synchronous_standby_names = '*'`, what the fail-over test and docs/cluster.md rely on) and
without (asynchronous: a fail-over may lose the last commits).

    python -m tests.bench.sync_commit [--commits 3000] [--concurrency 16]

Both on this machine (tests/support/pg_pair.py): the replica's round trip is loopback, so
this is the floor of the cost; across machines add the network's round trip per commit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.support.pg_pair import PgPair


async def run(url: str, commits: int, concurrency: int) -> tuple[float, float, float]:
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS b (id bigserial PRIMARY KEY, data jsonb)")
    latencies: list[float] = []
    todo = iter(range(commits))

    async def worker() -> None:
        async with pool.acquire() as conn:
            for _ in todo:
                began = time.perf_counter()
                await conn.execute("INSERT INTO b (data) VALUES ($1::jsonb)", '{"text": "m1"}')
                latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await pool.close()
    latencies.sort()
    return (
        commits / elapsed,
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    for synchronous in (False, True, False, True):  # twice each: the machine is shared
        pair = PgPair(Path(tempfile.mkdtemp(prefix="pg-bench-")), synchronous=synchronous)
        try:
            pair.start()
            rate, p50, p99 = asyncio.run(
                run(pair.primary_url("postgres"), args.commits, args.concurrency)
            )
        finally:
            pair.remove()
        mode = "synchronous " if synchronous else "asynchronous"
        print(f"{mode}: {rate:7.0f} commits/s, p50 {p50:5.2f} ms, p99 {p99:6.2f} ms")


if __name__ == "__main__":
    main()
