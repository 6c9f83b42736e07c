"""A first load measurement (issue 6 grows this into `make bench`).

Starts the real stack (isolated vhost and database, fake Graph API, offline responder), then:
1. ingress: signed webhooks posted by C concurrent clients for D seconds -> accepted/s and
   ack latency percentiles (closed loop: an upper bound of what ingress takes, not an
   open-loop latency figure);
2. end to end: R customer messages/s over many customers for D seconds (open loop, fixed
   arrival rate) -> reply latency percentiles at the fake Graph API, and lost/duplicate/
   out-of-order counts.

Usage: .venv/bin/python -m tests.bench.load [--seconds 10] [--rate 100 200] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

from shared.meta.signature import sign
from shared.payloads import text_message
from tests.e2e.harness import APP_SECRET, start_stack
from tests.support.infra import start_infra
from tests.support.otlp import FakeOTLPCollector


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def ingress_load(url: str, seconds: float, clients: int) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            # Statuses only: dedup records them, nothing is answered, so this isolates ingress.
            body = json.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "id": "1",
                            "changes": [{"field": "account_update", "value": {"n": n, "i": i}}],
                        }
                    ],
                }
            ).encode()
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={"X-Hub-Signature-256": sign(APP_SECRET, body)}
            ) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session, n) for n in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "accepted_per_s": statuses.get(200, 0) / elapsed,
        "requests": len(latencies),
        "non_200": sum(v for k, v in statuses.items() if k != 200),
        "p50_ms": pct(latencies, 50) * 1e3,
        "p99_ms": pct(latencies, 99) * 1e3,
    }


async def end_to_end(url: str, graph, seconds: float, rate: float, customers: int) -> dict:
    sent_at: dict[str, float] = {}
    expected: dict[str, list[str]] = {}
    total = int(seconds * rate)
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        tasks = []
        for i in range(total):
            customer = f"4915{customers:03d}{i % customers:07d}"
            text = f"m{i // customers}"
            expected.setdefault(customer, []).append(f"echo: {text}")
            body = json.dumps(text_message(text, customer=customer)).encode()
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[f"{customer}:{text}"] = time.monotonic()
            tasks.append(
                asyncio.create_task(
                    session.post(
                        url, data=body, headers={"X-Hub-Signature-256": sign(APP_SECRET, body)}
                    )
                )
            )
        for resp in await asyncio.gather(*tasks):
            resp.release()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(graph.sent) >= total:
                break
            await asyncio.sleep(0.1)
    received = [
        r
        for r in graph.requests
        if r.path.endswith("/messages") and (r.json or {}).get("type") == "text"
    ]
    latencies, got = [], {}
    for r in received:
        customer, body = r.json["to"], r.json["text"]["body"]
        got.setdefault(customer, []).append(body)
        key = f"{customer}:{body.removeprefix('echo: ').removeprefix('You said: ')}"
        if key in sent_at:
            latencies.append(r.received_at - sent_at[key])
    lost = sum(len(set(v) - set(got.get(c, []))) for c, v in expected.items())
    dupes = sum(len(v) - len(set(v)) for v in got.values())
    disorder = sum(1 for c, v in got.items() if v != [x for x in expected[c] if x in v])
    return {
        "offered_per_s": rate,
        "messages": total,
        "replies": len(received),
        "lost": lost,
        "duplicates": dupes,
        "out_of_order_customers": disorder,
        "p50_ms": pct(latencies, 50) * 1e3,
        "p99_ms": pct(latencies, 99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
        "mean_ms": statistics.fmean(latencies) * 1e3 if latencies else float("nan"),
    }


async def drain(amqp_url: str, limit_s: float = 120) -> float:
    """Wait until every stage queue is empty; returns how long that took."""
    import aio_pika

    from shared.broker.topology import stages
    from shared.config import Settings

    started = time.monotonic()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        names = [q for st in stages(Settings()).values() for q in [*st.queues, st.retry_queue]]
        while time.monotonic() - started < limit_s:
            depth = 0
            for name in names:
                queue = await channel.declare_queue(name, passive=True)
                depth += queue.declaration_result.message_count or 0
            if depth == 0:
                break
            await asyncio.sleep(0.2)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, nargs="+", default=[100])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument(
        "--tracing", action="store_true", help="export spans (OTLP) to a fake collector"
    )
    args = parser.parse_args()
    infra = start_infra()
    collector = FakeOTLPCollector().start() if args.tracing else None
    tracing_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url} if collector is not None else {}
    # Meta's top tier (1,000/s per number): the default 80/s would cap the end-to-end run.
    running = start_stack(
        infra.amqp_url,
        infra.database_url,
        LOG_LEVEL="WARNING",
        PREFETCH="128",
        WHATSAPP_RATE_PER_SECOND="1000",
        **tracing_env,
    )
    try:
        url = running.ingress_url + "/webhook"
        print("ingress", asyncio.run(ingress_load(url, args.seconds, args.clients)))
        print("backlog drained in", round(asyncio.run(drain(running.amqp_url)), 1), "s")
        for rate in args.rate:
            running.graph.reset()
            result = asyncio.run(end_to_end(url, running.graph, args.seconds, rate, args.customers))
            print("end_to_end", result)
            asyncio.run(drain(running.amqp_url))
    finally:
        running.stack.down()
        running.graph.stop()
        running.openai.stop()
        if collector is not None:
            print("spans exported", len(collector.spans))
            collector.stop()
        infra.cleanup()


if __name__ == "__main__":
    main()
