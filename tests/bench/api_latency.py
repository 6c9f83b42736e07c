"""The api's figures on this machine: `python -m tests.bench.api_latency`.

- latency of `GET /v1/conversations/{id}` and `POST /v1/messages` (a template), p50/p99,
  from one client thread per key (each within its rate);
- latency of `GET /v1/webhooks/endpoints/{id}` (the api's hop to the relay's admin API,
  decision 0008) beside the same GET asked of the relay directly;
- read-model lag under load: webhooks posted to ingress at a steady rate, and for each the
  time until the conversations read model's checkpoint has passed its MessageReceived (the
  row is written in that same transaction).

Runs its own stack on an isolated vhost and database (tests/e2e/harness.py), about a minute.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import threading
import time
import uuid

from shared.events.dedup import MessageReceived
from shared.eventstore import Position
from shared.payloads import text_message
from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running, start_stack
from tests.support.infra import start_infra


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p50 = statistics.median(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (n={len(values)})"


def timed(fn: object, *args: object, **kw: object) -> float:
    started = time.perf_counter()
    answer = fn(*args, **kw)  # type: ignore[operator]
    assert answer.status in (200, 202), answer
    return time.perf_counter() - started


def latencies(running: Running, requests: int) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    template = {"name": "hello_world", "language": {"code": "en_US"}}
    posts, conversations = [], []
    for i in range(requests):
        body = {"phone_number_id": number, "to": new_customer(), "type": "template",
                "template": template}  # fmt: skip
        started = time.perf_counter()
        answer = tenant.call("POST", "/v1/messages", body, role="agent")
        posts.append(time.perf_counter() - started)
        conversations.append(answer.json["conversation_id"])
        if i % 90 == 89:
            time.sleep(1)  # stay within the key's rate
    gets = []
    for i, conversation in enumerate(conversations):
        gets.append(timed(tenant.call, "GET", f"/v1/conversations/{conversation}", role="viewer"))
        if i % 90 == 89:
            time.sleep(1)
    print(f"POST /v1/messages:          {percentiles(posts)}")
    print(f"GET /v1/conversations/{{id}}: {percentiles(gets)}")


def webhooks(running: Running, requests: int) -> None:
    tenant = make_tenant(running, numbers=1)
    created = tenant.call(
        "POST", "/v1/webhooks/endpoints", {"url": "http://127.0.0.1:9/hooks", "description": "b"}
    )
    assert created.status == 201, created
    endpoint = created.json["id"]
    admin = running.relay_admin
    via_api, direct = [], []
    for i in range(requests):
        via_api.append(timed(tenant.call, "GET", f"/v1/webhooks/endpoints/{endpoint}"))
        started = time.perf_counter()
        admin.endpoint(endpoint)
        direct.append(time.perf_counter() - started)
        if i % 90 == 89:
            time.sleep(1)
    tenant.call("DELETE", f"/v1/webhooks/endpoints/{endpoint}")
    print(f"GET /v1/webhooks/endpoints/{{id}}: {percentiles(via_api)}")
    print(f"  the relay's own GET, direct:    {percentiles(direct)}")


def lag(running: Running, rate: float, seconds: float) -> None:
    posted: dict[str, float] = {}
    lock = threading.Lock()

    def post(i: int) -> None:
        wamid = f"wamid.{uuid.uuid4().hex}"
        payload = text_message(f"load {i}", customer=new_customer(), wamid=wamid)
        with lock:
            posted[wamid] = time.time()
        status, _ = running.post(payload)
        assert status == 200

    total = int(rate * seconds)
    visible: dict[str, float] = {}
    received: dict[str, tuple[Position, float]] = {}
    last = 0

    def look() -> None:
        """One look at the read model's checkpoint and the MessageReceived rows."""
        nonlocal last
        now = time.time()
        (checkpoint,) = running.sql(
            "SELECT transaction_id, global_position FROM subscription_checkpoints"
            " WHERE name = 'api.conversations'"
        )
        # Through the store: MessageReceived is sealed in the table.
        # Back by a margin: a transaction can commit after one with higher positions.
        after = max(0, last - 1000)
        for r in running.read_store(
            lambda store, after=after: store.read_after(after, types=["MessageReceived"])
        ):
            last = max(last, r.position.global_position)
            if isinstance(r.event, MessageReceived) and r.event.wamid in posted:
                received[r.event.wamid] = (r.position, r.recorded_at.timestamp())
        passed = Position(int(checkpoint["transaction_id"]), checkpoint["global_position"])
        for wamid, (position, _) in received.items():
            if wamid not in visible and position <= passed:
                visible[wamid] = now

    def watch(deadline: float) -> None:
        # Watching from the first post, beside the load: a watcher that starts after the
        # last post measures the run's length, not the lag (the figures before 2026-12-01).
        while len(visible) < total and time.monotonic() < deadline:
            look()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, args=(time.monotonic() + seconds + 60,))
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        started = time.monotonic()
        for i in range(total):
            pool.submit(post, i)
            time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    watcher.join()
    lags = [visible[w] - posted[w] for w in visible]
    recorded = {w: at for w, (_, at) in received.items() if w in visible}
    dedup = [recorded[w] - posted[w] for w in visible if w in recorded]
    projection = [visible[w] - recorded[w] for w in visible if w in recorded]
    print(f"  of which webhook -> recorded by dedup: {percentiles(dedup)}")
    print(f"  and recorded -> read model passed it:  {percentiles(projection)}")
    seen = f"visible {len(visible)}/{total}"
    print(f"read-model lag at {rate:g} webhooks/s: {percentiles(lags)}; {seen}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    infra = start_infra()
    running = start_stack(infra.amqp_url, infra.database_url)
    try:
        latencies(running, args.requests)
        webhooks(running, args.requests)
        lag(running, args.rate, args.seconds)
    finally:
        running.stack.down()
        running.graph.stop()
        running.openai.stop()
        infra.cleanup()


if __name__ == "__main__":
    main()
