"""`python -m tests.bench.appends`: what one `append_to_streams` call costs the database,
by the shape of the batch, the current function against migration 0003's loop.

Makes a scratch database (migrated, then 0003's function installed beside the current one
as `append_to_streams_0003`), and on one connection calls each function `--calls` times
per shape (streams x events per stream, every stream new), the two in turn for `--rounds`
rounds: wall milliseconds per call (the commit's WAL flush included) and the backend's CPU
milliseconds per call, read from /proc. The shapes are the ones the pipeline makes (in the
bench, 1 stream of 1 event, 1 of 2 and 2 of 1 each are 96% of its appends) and wider ones.

Usage: .venv/bin/python -m tests.bench.appends [--calls 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import asyncpg

from shared.eventstore.migrate import MIGRATIONS_DIR, migrate
from tests.support.infra import DEFAULT_DATABASE_URL

SHAPES = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1))
FUNCTIONS = ("append_to_streams", "append_to_streams_0003")


def backend_cpu_seconds(pid: int) -> float:
    """User and system CPU of a backend process (the server runs on this machine)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def per_call(
    conn: asyncpg.Connection, function: str, calls: int, streams: int, events: int
) -> tuple[float, float]:
    """(wall ms, backend CPU ms) per call of `function` with this shape."""
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    data = json.dumps({"text": "a customer's message of a usual length", "n": 1})
    n = streams * events
    cpu0, t0 = backend_cpu_seconds(pid), time.perf_counter()
    for _ in range(calls):
        await conn.fetch(
            f"SELECT * FROM {function}($1, $2, $3, $4, $5, $6, $7)",
            [f"bench-{uuid.uuid4().hex}" for _ in range(streams)],
            [None] * streams,
            [events] * streams,
            [uuid.uuid4() for _ in range(n)],
            ["Happened"] * n,
            [data] * n,
            ["{}"] * n,
        )
    wall, cpu = time.perf_counter() - t0, backend_cpu_seconds(pid) - cpu0
    return wall / calls * 1000, cpu / calls * 1000


async def main(calls: int, rounds: int) -> None:
    base = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL).rsplit("/", 1)[0]
    name = f"bench_appends_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{base}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await migrate(f"{base}/{name}")
        conn = await asyncpg.connect(f"{base}/{name}")
        old = (MIGRATIONS_DIR / "0003_append_to_streams.sql").read_text()
        await conn.execute(old.replace("FUNCTION append_to_streams(", f"FUNCTION {FUNCTIONS[1]}("))
        results: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for streams, events in SHAPES:
                for function in FUNCTIONS:
                    figures = await per_call(conn, function, calls, streams, events)
                    results.setdefault((function, streams, events), []).append(figures)
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    print("| streams x events | now: wall / CPU ms | 0003: wall / CPU ms | CPU now ÷ 0003 |")
    print("|---|---|---|---|")
    for streams, events in SHAPES:
        now, then = (
            [sorted(r)[len(r) // 2] for r in zip(*results[(f, streams, events)], strict=True)]
            for f in FUNCTIONS
        )
        print(
            f"| {streams} x {events} | {now[0]:.3f} / {now[1]:.3f} | {then[0]:.3f} / "
            f"{then[1]:.3f} | {now[1] / then[1]:.2f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="tests.bench.appends", description=__doc__)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
