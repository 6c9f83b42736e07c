"""Baselines of the machine: what its parts do with nothing of ours in the way.

- `python -m tests.bench.ceilings http --port P --secret S`: an aiohttp server whose POST
  /webhook only verifies the signature (ingress without the broker): the HTTP ceiling.
- `python -m tests.bench.ceilings trivial --port P`: a bare asyncio protocol answering every
  request with a canned 200 and no HTTP framework, so that measuring it measures the load
  generator (its own ceiling).
- `run_baseline(job)` (in a generator worker): raw aio-pika persistent publishes with
  confirms, many in flight (the broker ceiling), and raw asyncpg calls of `append_to_stream`
  (the database ceiling), each also one at a time for the unloaded latency.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from typing import Any

import aio_pika
import asyncpg
import msgspec
from aiohttp import web

from shared.eventstore.postgres import create_pool
from shared.meta.signature import is_valid

# --- servers -----------------------------------------------------------------------------------

_CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _Trivial(asyncio.Protocol):
    """HTTP/1.1 keep-alive without a framework: find each request's end, answer 200 "ok"."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(_CANNED)


async def _serve_trivial(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Trivial, "127.0.0.1", port, backlog=1024)
    async with server:
        await _until_signal()


def signature_app(secret: str) -> web.Application:
    """Ingress's front half: read the body, check X-Hub-Signature-256, answer."""

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        if not is_valid(secret, body, request.headers.get("X-Hub-Signature-256")):
            return web.Response(status=401, text="bad signature")
        return web.Response(text="ok")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    return app


async def _serve_http(port: int, secret: str) -> None:
    # The same runner options as the services (shared/runtime.py), on loopback.
    runner = web.AppRunner(signature_app(secret), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    try:
        await _until_signal()
    finally:
        await runner.cleanup()


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ceilings")
    parser.add_argument("server", choices=["http", "trivial"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default="")
    args = parser.parse_args(argv)
    if args.server == "http":
        asyncio.run(_serve_http(args.port, args.secret))
    else:
        asyncio.run(_serve_trivial(args.port))


# --- broker and database baselines ---------------------------------------------------------------


def _sample_body(size: int) -> bytes:
    """A JSON body of about `size` bytes, shaped like a WebhookDelivery."""
    filler = "x" * max(0, size - 120)
    return msgspec.json.encode(
        {"delivery_id": uuid.uuid4().hex, "received_at": time.time(), "body": filler}
    )


async def run_baseline(job: dict[str, Any]) -> dict[str, Any]:
    if job["kind"] == "broker":
        return await broker_ceiling(job["amqp_url"], job["duration"], job["in_flight"])
    if job["kind"] == "broker_hop":
        return await broker_hop(job["amqp_url"], job["rate"], job["duration"])
    if job["kind"] == "database":
        return await database_ceiling(job["database_url"], job["duration"], job["concurrency"])
    raise ValueError(f"unknown job {job['kind']}")


async def broker_ceiling(amqp_url: str, duration: float, in_flight: int) -> dict[str, Any]:
    """Persistent publishes with confirms to a consistent-hash exchange over four quorum
    queues (a stage's shape), `in_flight` awaiting their confirm at any time."""
    connection = await aio_pika.connect(amqp_url)
    name = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, "x-consistent-hash", durable=True)
        queues = []
        for i in range(4):
            queue = await channel.declare_queue(
                f"{name}.{i}", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.bind(exchange, routing_key="1")
            queues.append(queue)
        body = _sample_body(900)

        def message() -> aio_pika.Message:
            return aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                type="WebhookDelivery",
                message_id=uuid.uuid4().hex,
                headers={"x-delivery-id": "d", "x-published-at": time.time()},
                timestamp=time.time(),
            )

        # Unloaded: one publish at a time.
        single: list[float] = []
        for i in range(200):
            started = time.monotonic()
            await exchange.publish(message(), routing_key=f"k{i}")
            single.append(time.monotonic() - started)

        confirmed = 0
        latencies: list[float] = []
        deadline = time.monotonic() + duration

        async def publisher(n: int) -> None:
            nonlocal confirmed
            i = 0
            while time.monotonic() < deadline:
                i += 1
                started = time.monotonic()
                await exchange.publish(message(), routing_key=f"{n}.{i}")
                latencies.append(time.monotonic() - started)
                confirmed += 1

        started = time.monotonic()
        cpu = time.process_time()
        await asyncio.gather(*(publisher(n) for n in range(in_flight)))
        cpu = time.process_time() - cpu
        elapsed = time.monotonic() - started
        for queue in queues:
            await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
    return {
        "per_s": confirmed / elapsed,
        "count": confirmed,
        "elapsed_s": elapsed,
        "latencies": latencies,
        "single": single,
        "body_bytes": len(body),
        "client_cpu_s_per_1000": cpu / max(1, confirmed) * 1000,
    }


async def broker_hop(amqp_url: str, rate: float, duration: float) -> dict[str, Any]:
    """One pipeline hop at a fixed rate: a confirmed persistent publish to a quorum queue,
    delivered (prefetch 64) and acked. The broker's CPU per hop is measured by the caller;
    it is what every one of the pipeline's hops costs at least."""
    connection = await aio_pika.connect(amqp_url)
    name = f"bench-hop-{uuid.uuid4().hex[:8]}"
    body = _sample_body(900)
    async with connection:
        publishing = await connection.channel(publisher_confirms=True)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=64)
        await publishing.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        queue = await consuming.get_queue(name)
        count = int(rate * duration)
        done = asyncio.Event()
        consumed = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if consumed == count:
                done.set()

        tag = await queue.consume(on_message)
        started = time.monotonic()
        pending = []
        for i in range(count):
            msg = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            pending.append(
                asyncio.ensure_future(publishing.default_exchange.publish(msg, routing_key=name))
            )
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        await asyncio.gather(*pending)
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.monotonic() - started
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    return {"count": count, "rate": rate, "elapsed_s": elapsed}


_APPEND = "SELECT * FROM append_to_stream($1, $2, $3, $4, $5, $6)"


async def database_ceiling(database_url: str, duration: float, concurrency: int) -> dict[str, Any]:
    """`append_to_stream` through asyncpg on a pool the size the services use (10): one event
    per call to its own stream (as dedup records a message), then 50 events per call."""
    pool = await create_pool(database_url, min_size=10, max_size=10)
    data = {
        "conversation_id": "100000000000001.4900000001",
        "customer": "4900000001",
        "wamid": "wamid." + "x" * 40,
        "type": "text",
        "message": {"type": "text", "text": {"body": "hello " * 20}},
        "received_at": time.time(),
    }
    meta = {"correlation_id": uuid.uuid4().hex, "causation_id": uuid.uuid4().hex}

    async def append(conn: Any, stream: str, n: int) -> None:
        await conn.fetch(
            _APPEND,
            stream,
            None,
            [uuid.uuid4() for _ in range(n)],
            ["BenchEvent"] * n,
            [data] * n,
            [meta] * n,
        )

    try:
        single: list[float] = []
        async with pool.acquire() as conn:
            for _ in range(200):
                started = time.monotonic()
                await append(conn, f"benchceiling-{uuid.uuid4().hex}", 1)
                single.append(time.monotonic() - started)

        async def run(events_per_append: int, seconds: float) -> tuple[int, float, list[float]]:
            appends = 0
            latencies: list[float] = []
            deadline = time.monotonic() + seconds

            async def worker() -> None:
                nonlocal appends
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    async with pool.acquire() as conn:
                        await append(conn, f"benchceiling-{uuid.uuid4().hex}", events_per_append)
                    latencies.append(time.monotonic() - started)
                    appends += 1

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return appends, time.monotonic() - started, latencies

        cpu = time.process_time()
        appends, elapsed, latencies = await run(1, duration)
        cpu = time.process_time() - cpu
        batches, batch_elapsed, _ = await run(50, max(1.0, duration / 2))
    finally:
        await pool.close()
    # Leave the bench database as the services expect it (their reads scan by category).
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM events WHERE stream_name LIKE 'benchceiling-%'")
    finally:
        await conn.close()
    return {
        "per_s": appends / elapsed,
        "count": appends,
        "elapsed_s": elapsed,
        "latencies": latencies,
        "single": single,
        "batched_events_per_s": batches * 50 / batch_elapsed,
        "client_cpu_s_per_1000": cpu / max(1, appends) * 1000,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
