"""Webhook relay measurements: deliveries/s to a healthy endpoint, and recovery after an outage.

Runs the real relay process (`python -m services.webhook_relay`) on an isolated database, with
one CRM (a real HTTP server on loopback, answering 200 at once) registered for every event.
Events are appended straight to the event store (BotReplied, over many conversations), so
this measures the relay, not the bot pipeline in front of it.

1. healthy: N events appended as fast as possible -> deliveries/s from the first append to
   the last delivery at the CRM (and the append rate, to show it is not the bottleneck);
2. outage: the CRM is down while M events are recorded; it comes back -> time to the first
   delivery (the breaker's probe), and time until the whole backlog is delivered.

Usage: .venv/bin/python -m tests.bench.relay [--events 5000] [--conversations 200]
           [--outage-events 2000] [--outage-seconds 10] [--in-flight 10] [--breaker-reset 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from services.webhook_relay.client import AdminClient
from shared.config import load_settings
from shared.events.conversation import BotReplied
from shared.eventstore import NewEvent
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.stack import Stack
from tests.e2e.harness import free_port
from tests.support.crm_fakes import FakeCRM
from tests.support.infra import start_infra

TOKEN = "bench-admin-token"


async def append_events(database_url: str, count: int, conversations: int) -> float:
    """Appends `count` BotReplied events round-robin over the conversations; returns seconds."""
    pool = await create_pool(database_url, max_size=8)
    store = PostgresEventStore(pool)
    run = uuid.uuid4().hex[:6]
    started = time.perf_counter()
    per_conversation = max(1, count // conversations)
    batch = 10  # events per append call: a few turns of one conversation at a time

    async def one(c: int) -> None:
        stream = f"conversation-100.{run}{c:05d}"
        for first in range(0, per_conversation, batch):
            events = [
                NewEvent(BotReplied(seq=s, text=f"reply {s}", command_id=f"{c}-{s}"))
                for s in range(first, min(first + batch, per_conversation))
            ]
            await store.append(stream, events)

    await asyncio.gather(*(one(c) for c in range(conversations)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed


def wait_count(crm: FakeCRM, target: int, timeout: float) -> float | None:
    """Seconds until the CRM has `target` distinct webhook-ids, or None on timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if len({r.headers.get("webhook-id") for r in crm.accepted()}) >= target:
            return time.perf_counter() - started
        time.sleep(0.05)
    return None


def distinct(crm: FakeCRM) -> int:
    return len({r.headers.get("webhook-id") for r in crm.accepted()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--outage-events", type=int, default=2000)
    parser.add_argument("--outage-seconds", type=float, default=10)
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--breaker-reset", type=float, default=5)
    args = parser.parse_args()

    infra = start_infra()
    crm = FakeCRM().start()
    port = free_port()
    env = {
        "ENV_FILE": "/nonexistent/.env",
        "DATABASE_URL": infra.database_url,
        "AMQP_URL": infra.amqp_url,
        "ADMIN_TOKEN": TOKEN,
        "WEBHOOK_RELAY_PORT": str(port),
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "WEBHOOK_MAX_IN_FLIGHT": str(args.in_flight),
        "BREAKER_RESET_SECONDS": str(args.breaker_reset),
        "LOG_LEVEL": "WARNING",
        "RUN_DIR": f"/tmp/relay-bench-{uuid.uuid4().hex[:6]}",
    }
    settings = load_settings(env=env)
    stack = Stack(settings, env=env)
    try:
        stack.up(("webhook_relay",), timeout=60)
        admin = AdminClient(f"http://127.0.0.1:{port}", TOKEN)
        admin.create_endpoint(crm.endpoint_url)

        # 1. healthy endpoint
        started = time.perf_counter()
        appended = asyncio.run(append_events(infra.database_url, args.events, args.conversations))
        total = (args.events // args.conversations) * args.conversations
        waited = wait_count(crm, total, timeout=600)
        elapsed = time.perf_counter() - started
        if waited is None:
            print(f"healthy: only {distinct(crm)} of {total} delivered in 600 s")
        else:
            print(
                f"healthy: {total} events over {args.conversations} conversations appended in "
                f"{appended:.2f} s ({total / appended:,.0f}/s); all delivered after "
                f"{elapsed:.2f} s -> {total / elapsed:,.0f} deliveries/s "
                f"(max in flight per endpoint {args.in_flight})"
            )

        # 2. outage and recovery
        before = distinct(crm)
        crm.go_down()
        outage_started = time.perf_counter()
        asyncio.run(append_events(infra.database_url, args.outage_events, args.conversations))
        backlog = (args.outage_events // args.conversations) * args.conversations
        time.sleep(max(0.0, args.outage_seconds - (time.perf_counter() - outage_started)))
        crm.come_back()
        back = time.perf_counter()
        first = wait_count(crm, before + 1, timeout=600)
        drained = wait_count(crm, before + backlog, timeout=600)
        if drained is None or first is None:
            print(f"outage: only {distinct(crm) - before} of {backlog} delivered in 600 s")
        else:
            drain_time = drained - first
            print(
                f"outage: CRM down {back - outage_started:.1f} s with "
                f"{backlog} events recorded meanwhile; after it came back: first delivery "
                f"{first:.2f} s (breaker reset {args.breaker_reset:g} s), whole backlog "
                f"{drained:.2f} s ({backlog / max(drain_time, 1e-9):,.0f} deliveries/s once "
                "flowing)"
            )
    finally:
        stack.down(("webhook_relay",))
        crm.stop()
        infra.cleanup()


if __name__ == "__main__":
    main()
