"""Download-and-store throughput of the media service's own code path (not a timed test).

`python -m tests.bench.media_store [--sizes 100k 1m 10m] [--total-mb 200] [--concurrency 8]`

A fake Graph API (media endpoints, a real HTTP server) runs in a separate process and serves
random files; this process downloads them the way the media service does (`GraphMedia`:
metadata call, streamed download with sha256 and size checks, fsync) into `LocalStore` under a
temporary directory, and reports files/s and MB/s, then does the same files again (the
content-addressed store then keeps nothing new). No broker or database: this measures the
file path alone; the event store append per file is the core pipeline's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from services.media.graph import GraphMedia
from shared.media_store import LocalStore
from shared.resilience import Upstream

UNITS = {"k": 1024, "m": 1024 * 1024}


def parse_size(text: str) -> int:
    return int(float(text[:-1]) * UNITS[text[-1].lower()]) if text[-1].isalpha() else int(text)


def serve(conn: Connection, count: int, size: int) -> None:
    from tests.support.media_fakes import FakeGraphMedia

    graph = FakeGraphMedia("bench-token").start()
    ids = [graph.add_media(os.urandom(size), "video/mp4").media_id for _ in range(count)]
    conn.send((graph.url, ids))
    conn.recv()  # until told to stop
    graph.stop()


async def run(url: str, ids: list[str], size: int, root: Path, concurrency: int) -> dict:
    async with aiohttp.ClientSession() as session:
        upstream = Upstream("whatsapp-media", session, 30.0, 5, 30.0)
        graph = GraphMedia(upstream, url, "bench-token", 30.0)
        store = LocalStore(root)
        tmp = root / ".incoming"
        tmp.mkdir(parents=True, exist_ok=True)
        gate = asyncio.Semaphore(concurrency)
        durations: list[float] = []
        new = 0

        async def one(media_id: str) -> None:
            nonlocal new
            async with gate:
                started = time.perf_counter()
                got = await graph.download(media_id, 100 * 1024 * 1024, tmp)
                _, existed = await store.put(got.path, got.sha256, "video/mp4")
                new += not existed
                durations.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        elapsed = time.perf_counter() - started
    durations.sort()
    return {
        "files": len(ids),
        "stored_new": new,
        "seconds": elapsed,
        "files_per_s": len(ids) / elapsed,
        "mb_per_s": len(ids) * size / elapsed / 1e6,
        "p50_ms": statistics.median(durations) * 1000,
        "p95_ms": durations[int(len(durations) * 0.95) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["100k", "1m", "10m"])
    parser.add_argument("--total-mb", type=float, default=200.0, help="per size")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"concurrency {args.concurrency}; fake Graph API in a separate process; fsync on")
    print(
        f"{'size':>6} {'pass':>6} {'files':>6} {'new':>5} {'files/s':>9} {'MB/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8}"
    )
    for text in args.sizes:
        size = parse_size(text)
        count = max(4, int(args.total_mb * 1e6 / size))
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.Process(target=serve, args=(child, count, size), daemon=True)
        server.start()
        url, ids = parent.recv()
        root = Path(tempfile.mkdtemp(prefix="media-bench-"))
        try:
            for label in ("first", "again"):
                r = asyncio.run(run(url, ids, size, root, args.concurrency))
                print(
                    f"{text:>6} {label:>6} {r['files']:>6} {r['stored_new']:>5} "
                    f"{r['files_per_s']:>9.1f} {r['mb_per_s']:>8.1f} "
                    f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f}"
                )
        finally:
            parent.send("stop")
            server.join(10)
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
