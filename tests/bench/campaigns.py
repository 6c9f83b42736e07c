"""Campaign throughput on this machine: `python -m tests.bench.campaigns`.

For each number rate (80/s, Meta's default, and 1,000/s, its highest tier): a campaign of
`--recipients` (1,000) against the fake Graph API, timed from the start's answer to the
last send Meta received: the send rate reached against the configured one (campaigns take
80% of a number's rate, shared.campaigns.pacing). Then the reply latency of customers
writing to the bot (webhook posted -> reply at the fake Graph API), without a campaign and
during one at the number's full rate: `--probes` customers one after another, `--gap`
seconds apart (`--replies-only` skips the throughput runs; make `--recipients` large
enough that the campaign outlasts the probes: the line says whether it did).

Runs its own stack on an isolated vhost and database (tests/e2e/harness.py)."""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time

from tests.e2e.api_support import Tenant, new_customer
from tests.e2e.harness import Running, start_stack
from tests.e2e.test_campaigns import _tenant, campaign, wait_status
from tests.support.fakes import wait_for
from tests.support.infra import start_infra


def throughput(running: Running, rate: float, recipients: int) -> None:
    tenant = _tenant(running, rate=rate)
    people = [new_customer() for _ in range(recipients)]
    made = campaign(tenant, {"recipients": [{"to": p, "variables": {"1": "x"}} for p in people]})
    wanted = set(people)
    started = time.monotonic()
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    wait_status(tenant, made["id"], "completed", within=recipients / rate * 5 + 60)
    completed = time.monotonic()
    with running.graph._lock:
        times = sorted(s["received_at"] for s in running.graph.sent if s["to"] in wanted)
    assert len(times) == recipients, len(times)
    span = times[-1] - started
    steady = (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0
    print(
        f"number at {rate:g}/s (campaign share {rate * 0.8:g}/s): {recipients} sent in"
        f" {span:.2f} s from start ({recipients / span:.0f}/s; {steady:.0f}/s first to last"
        f" send); completed seen after {completed - started:.2f} s"
    )


def _reply_latency(running: Running, tenant: Tenant, probes: int, gap: float = 0.2) -> list[float]:
    number = next(iter(tenant.numbers))
    out = []
    for i in range(probes):
        customer = new_customer()
        posted = time.monotonic()
        tenant.webhook(number, customer, f"hello {i}")
        wait_for(lambda c=customer: bool(running.graph.texts_to(c)), timeout=30)
        out.append(running.graph.sent_to(customer)[0]["received_at"] - posted)
        time.sleep(gap)
    return out


def _summary(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[max(0, math.ceil(len(values) * 0.99) - 1)]  # nearest rank
    return (
        f"p50 {statistics.median(values) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (n={len(values)})"
    )


def replies(running: Running, rate: float, recipients: int, probes: int, gap: float = 0.2) -> None:
    tenant = _tenant(running, rate=rate)
    quiet = _reply_latency(running, tenant, probes, gap)
    people = [new_customer() for _ in range(recipients)]
    made = campaign(tenant, {"recipients": [{"to": p, "variables": {"1": "x"}} for p in people]})
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    busy: list[float] = []
    worker = threading.Thread(
        target=lambda: busy.extend(_reply_latency(running, tenant, probes, gap))
    )
    worker.start()
    worker.join()
    state = tenant.call("GET", f"/v1/campaigns/{made['id']}").json
    print(f"reply latency at {rate:g}/s, no campaign:     {_summary(quiet)}")
    print(
        f"reply latency at {rate:g}/s, campaign running: {_summary(busy)}"
        f" (campaign {state['status']}, {state['counts']['sent']} sent by the end)"
    )
    wait_status(tenant, made["id"], "completed", within=recipients / rate * 5 + 60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rates", default="80,1000")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between probes")
    parser.add_argument(
        "--replies-only", action="store_true", help="the reply latency only (no throughput)"
    )
    args = parser.parse_args()
    infra = start_infra()
    running = start_stack(infra.amqp_url, infra.database_url)
    try:
        if not args.replies_only:
            for rate in (float(r) for r in args.rates.split(",")):
                throughput(running, rate, args.recipients)
        replies(running, 80.0, args.recipients, args.probes, args.gap)
    finally:
        running.stack.down()
        running.graph.stop()
        running.openai.stop()
        infra.cleanup()


if __name__ == "__main__":
    main()
