"""The load generator: signed webhooks, open loop or saturating, from several processes.

Each job runs in a worker process of a `Generator` (a spawn pool), so the generator gets its
own interpreters instead of sharing one with the harness. A job builds and signs all its
bodies before the common start time, then posts them: open loop at fixed arrival times, or
as fast as `concurrency` requests in flight allow. Times are `time.monotonic()`, which on
Linux is one clock for every process of the machine, so the harness can match the fakes'
receive times against the generator's schedule.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from shared.meta.signature import sign
from shared.payloads import status_payload, text_message
from tests.bench.stats import schedule, share

_encode = msgspec.json.encode
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Traffic:
    """What to post: message i is from customer `prefix + (i % customers)`, with wamid
    `wamid.<tag>.<i>` and text `<tag> <i>` (so the echo reply names the message)."""

    kind: str = "text"  # "text" (customer messages) or "status" (delivery statuses)
    tag: str = "b"
    prefix: str = "4900"
    customers: int = 1000

    def customer(self, i: int) -> str:
        return f"{self.prefix}{i % self.customers:07d}"

    def text(self, i: int) -> str:
        return f"{self.tag} {i}"

    def body(self, i: int) -> bytes:
        customer = self.customer(i)
        if self.kind == "status":
            payload = status_payload(f"wamid.{self.tag}.s{i}", "delivered", customer)
        else:
            payload = text_message(self.text(i), customer=customer, wamid=f"wamid.{self.tag}.{i}")
            # As Meta sends them now: the business-scoped user id beside the number (pywa,
            # the bench's peer, refuses a message without it).
            contact = payload["entry"][0]["changes"][0]["value"]["contacts"][0]
            contact["user_id"] = f"US.{customer}"
        return _encode(payload)


def message_index(traffic_tag: str, reply_text: str) -> int | None:
    """The message index an echo reply answers ("echo: <tag> <i>"), or None."""
    prefix = f"echo: {traffic_tag} "
    if not reply_text.startswith(prefix):
        return None
    try:
        return int(reply_text[len(prefix) :])
    except ValueError:
        return None


# --- jobs (run in worker processes) ------------------------------------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Entry point of a worker process: dispatch on job["kind"]."""
    started_cpu = time.process_time()
    kind = job["kind"]
    if kind == "open":
        result = asyncio.run(_open_job(job))
    elif kind == "saturate":
        result = asyncio.run(_saturate_job(job))
    elif kind == "sequential":
        result = asyncio.run(_sequential_job(job))
    else:  # baselines of the broker and the database live beside their servers
        from tests.bench import ceilings

        result = asyncio.run(ceilings.run_baseline(job))
    result["cpu_s"] = time.process_time() - started_cpu
    return result


def _settle() -> None:
    """Move the pre-built bodies out of the garbage collector's sight: a full collection
    walking them mid-run would show up as the server's latency."""
    gc.collect()
    gc.freeze()


def _headers(secret: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)}


async def _warm(session: aiohttp.ClientSession, base_url: str, connections: int) -> None:
    """Open the connections before the clock starts (a real Meta keeps them open too)."""

    async def one() -> None:
        try:
            async with session.get(base_url + "/healthz") as resp:
                await resp.read()
        except aiohttp.ClientError:
            pass

    await asyncio.gather(*(one() for _ in range(connections)))


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def _open_job(job: dict[str, Any]) -> dict[str, Any]:
    traffic: Traffic = job["traffic"]
    rate, duration, t0 = job["rate"], job["duration"], job["t0"]
    times = schedule(rate, duration, t0)
    mine = share(range(len(times)), job["workers"], job["worker"], traffic.customers)
    bodies = [traffic.body(i) for i in mine]
    headers = [_headers(job["secret"], b) for b in bodies]
    _settle()
    n = len(mine)
    sent = [0.0] * n
    done = [0.0] * n
    status = [0] * n
    url = job["base_url"] + job.get("path", "/webhook")
    async with _session(job["connections"]) as session:
        await _warm(session, job["base_url"], job["connections"])

        async def one(k: int) -> None:
            sent[k] = time.monotonic()
            try:
                async with session.post(url, data=bodies[k], headers=headers[k]) as resp:
                    await resp.read()
                    status[k] = resp.status
            except TimeoutError:
                status[k] = -1
            except aiohttp.ClientError:
                status[k] = 0
            done[k] = time.monotonic()

        tasks: set[asyncio.Task[None]] = set()
        for k, i in enumerate(mine):
            delay = times[i] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(k))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.wait(set(tasks))
    return {
        "index": mine,
        "scheduled": [times[i] for i in mine],
        "sent": sent,
        "done": done,
        "status": status,
    }


async def _saturate_job(job: dict[str, Any]) -> dict[str, Any]:
    """Closed loop with `concurrency` requests in flight: the most this endpoint answers."""
    traffic: Traffic = job["traffic"]
    count = job["max_requests"]
    mine = share(range(count), job["workers"], job["worker"], traffic.customers)
    bodies = [traffic.body(i) for i in mine]
    headers = [_headers(job["secret"], b) for b in bodies]
    _settle()
    url = job["base_url"] + job.get("path", "/webhook")
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    next_body = 0
    async with _session(job["concurrency"]) as session:
        await _warm(session, job["base_url"], job["concurrency"])
        delay = job["t0"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # Late when building the bodies took longer than the lead: measure from the real start.
        start = time.monotonic()
        deadline = start + job["duration"]

        async def client() -> None:
            nonlocal next_body
            while time.monotonic() < deadline and next_body < len(bodies):
                k = next_body
                next_body += 1
                started = time.monotonic()
                try:
                    async with session.post(url, data=bodies[k], headers=headers[k]) as resp:
                        await resp.read()
                        code = resp.status
                except TimeoutError:
                    code = -1
                except aiohttp.ClientError:
                    code = 0
                statuses[code] = statuses.get(code, 0) + 1
                latencies.append(time.monotonic() - started)

        await asyncio.gather(*(client() for _ in range(job["concurrency"])))
        elapsed = time.monotonic() - start
    return {
        "statuses": statuses,
        "elapsed": elapsed,
        "latencies": latencies,
        "exhausted": next_body >= len(bodies),
    }


async def _sequential_job(job: dict[str, Any]) -> dict[str, Any]:
    """One request at a time: the unloaded latency of one round trip."""
    traffic: Traffic = job["traffic"]
    url = job["base_url"] + job.get("path", "/webhook")
    latencies: list[float] = []
    async with _session(1) as session:
        await _warm(session, job["base_url"], 1)
        for i in range(job["count"]):
            body = traffic.body(i)
            started = time.monotonic()
            async with session.post(url, data=body, headers=_headers(job["secret"], body)) as resp:
                await resp.read()
            latencies.append(time.monotonic() - started)
    return {"latencies": latencies}


# --- the harness side --------------------------------------------------------------------------


class Generator:
    """A pool of generator processes, started once and reused by every phase."""

    def __init__(self, processes: int, concurrent_runs: int = 1) -> None:
        # Each run uses `processes` workers; `concurrent_runs` runs can overlap (a probe
        # beside a burst).
        self.processes = processes
        size = processes * concurrent_runs
        self._pool = multiprocessing.get_context("spawn").Pool(size)
        # Import the job code in every worker now, not during the first measurement.
        self._pool.map(_noop, range(size), chunksize=1)

    def pids(self) -> list[int]:
        return [p.pid for p in self._pool._pool if p.pid is not None]  # type: ignore[attr-defined]

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def run_one(self, job: dict[str, Any]) -> dict[str, Any]:
        return self._pool.apply(run_job, (job,))

    def start_open(
        self,
        base_url: str,
        secret: str,
        traffic: Traffic,
        rate: float,
        duration: float,
        connections: int,
        lead: float = 1.5,
    ) -> OpenRun:
        """Start an open-loop run `lead` seconds from now (bodies are built meanwhile);
        returns at once, `OpenRun.result()` waits for it."""
        t0 = time.monotonic() + lead
        jobs = [
            {
                "kind": "open",
                "base_url": base_url,
                "secret": secret,
                "traffic": traffic,
                "rate": rate,
                "duration": duration,
                "t0": t0,
                "workers": self.processes,
                "worker": w,
                "connections": connections,
            }
            for w in range(self.processes)
        ]
        return OpenRun(t0, rate, duration, traffic, self._pool.map_async(run_job, jobs))

    def saturate(
        self,
        base_url: str,
        secret: str,
        traffic: Traffic,
        duration: float,
        concurrency: int,
        max_requests: int,
        path: str = "/webhook",
    ) -> dict[str, Any]:
        t0 = time.monotonic() + 1.5
        jobs = [
            {
                "kind": "saturate",
                "base_url": base_url,
                "path": path,
                "secret": secret,
                "traffic": traffic,
                "duration": duration,
                "t0": t0,
                "workers": self.processes,
                "worker": w,
                "concurrency": concurrency,
                "max_requests": max_requests,
            }
            for w in range(self.processes)
        ]
        parts = self._pool.map(run_job, jobs)
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        for part in parts:
            for code, n in part["statuses"].items():
                statuses[code] = statuses.get(code, 0) + n
            latencies.extend(part["latencies"])
        elapsed = max(p["elapsed"] for p in parts)
        return {
            "ok": statuses.get(200, 0),
            "statuses": statuses,
            "elapsed_s": elapsed,
            "per_s": statuses.get(200, 0) / elapsed,
            "latencies": latencies,
            "exhausted": any(p["exhausted"] for p in parts),
            "generator_cpu_s": sum(p["cpu_s"] for p in parts),
        }


def _noop(_: int) -> None:
    import tests.bench.ceilings  # noqa: F401


@dataclass
class OpenRun:
    t0: float
    rate: float
    duration: float
    traffic: Traffic
    _async: Any

    def ready(self) -> bool:
        return bool(self._async.ready())

    def result(self) -> dict[str, Any]:
        """Merged per-message arrays, ordered by message index."""
        parts = self._async.get()
        rows = sorted(
            (i, s, se, d, st)
            for part in parts
            for i, s, se, d, st in zip(
                part["index"],
                part["scheduled"],
                part["sent"],
                part["done"],
                part["status"],
                strict=True,
            )
        )
        return {
            "index": [r[0] for r in rows],
            "scheduled": [r[1] for r in rows],
            "sent": [r[2] for r in rows],
            "done": [r[3] for r in rows],
            "status": [r[4] for r in rows],
            "generator_cpu_s": sum(p["cpu_s"] for p in parts),
        }
