"""`make bench-ingress`: ingress alone, for comparing two versions of its code minutes apart.

Starts the bench's stack, stops dedup (every acknowledged delivery stays in the durable
queues, which are counted against the acknowledgements, then purged), and measures:
- the most webhooks accepted per second (128 in flight), with the CPU of ingress and of
  RabbitMQ per 1,000 webhooks;
- a long open-loop run at `--rate` (default 1,000/s for 60 s): ack p50 / p99 / p99.9 / max,
  how many acks took over 100 ms, and the longest time no answer at all came back while
  requests were owed (a stall);
- with `--overload R`, an open-loop run at R/s (above what ingress can accept): how soon
  every webhook was answered, 200 or 503.

With `--spy`, py-spy samples ingress during the saturation and prints where its CPU goes.

Usage: .venv/bin/python -m tests.bench.ingress [--rate 1000] [--seconds 60]
       [--overload 0] [--connections 64] [--spy] [--env KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from shared.stack import ROOT
from tests.bench.profile import py_spy, record, summarise
from tests.bench.run import APP_SECRET, Bench, Plan, log, stage_queues
from tests.bench.stats import stalls, summary_ms

PROFILE = ROOT / "bench-results" / "profile-ingress.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-ingress", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--overload", type=float, default=0.0, help="offered/s above capacity")
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    parser.add_argument("--saturate-seconds", type=float, default=8.0)
    parser.add_argument("--spy", action="store_true", help="py-spy ingress while saturated")
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="per generator process (2): more than ingress lets wait on the broker (256)"
        " shows what a client that keeps opening connections, as Meta does, is answered",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra stack setting"
    )
    args = parser.parse_args(argv)
    plan = Plan.make(quick=True)
    plan.connections = args.connections
    bench = Bench(plan, dict(kv.split("=", 1) for kv in args.env))
    report: dict[str, Any] = {}
    failed = False
    try:
        bench.setup()
        bench.start()
        assert bench.running is not None and bench.gen is not None and bench.links is not None
        running, gen, links = bench.running, bench.gen, bench.links
        queues = stage_queues(running, ("dedup",))
        running.stack.stop("dedup")
        links.purge(queues)
        spy = None
        if args.spy:
            exe, pid = py_spy(), running.stack.pid("ingress")
            if exe is None or pid is None:
                parser.error("--spy needs py-spy (make install) and a running ingress")
            PROFILE.parent.mkdir(parents=True, exist_ok=True)
            spy = record(exe, pid, args.saturate_seconds + 1, PROFILE)
        meter = bench.meter()
        meter.start()
        sat = gen.saturate(
            running.ingress_url,
            APP_SECRET,
            bench.traffic(customers=10_000),
            args.saturate_seconds,
            bench.plan.connections,
            12_000 * int(args.saturate_seconds),
        )
        cost = meter.stop()
        per_1000 = {
            name.split(" ")[0]: round(1000 * c["cpu_s"] / max(1, sat["ok"]), 3)
            for name, c in cost.items()
            if name in ("ingress", "load generator") or name.startswith("rabbitmq")
        }
        accepted = sat["ok"]
        report["saturated"] = {
            "per_s": sat["per_s"],
            "statuses": {str(k): v for k, v in sat["statuses"].items()},
            "cpu_s_per_1000": per_1000,
            **summary_ms(sat["latencies"]),
        }
        log(f"saturated: {sat['per_s']:.0f}/s accepted, CPU s per 1,000: {per_1000}")
        if spy is not None:
            spy.wait(timeout=60)
            print(summarise(PROFILE, top=25))
        links.purge(queues)
        runs = [("steady", args.rate, args.seconds)]
        if args.overload > 0:
            runs.append(("overload", args.overload, args.overload_seconds))
        for name, rate, seconds in runs:
            before = sum(links.depths(queues).values())
            res = bench.open_loop(
                running.ingress_url, bench.traffic(customers=10_000), rate, seconds
            ).result()
            fig = bench.ack_figures(res, rate, seconds)
            answered = [d - s for d, s in zip(res["done"], res["scheduled"], strict=True)]
            fig["answered"] = summary_ms(answered)  # 200 and 503 alike: how long Meta waits
            fig["within_1s"] = sum(1 for a in answered if a <= 1.0) / max(1, len(answered))
            fig.update(stalls(res))
            queued = sum(links.depths(queues).values()) - before
            fig["queued"] = queued
            if queued < fig["accepted"]:
                failed = True
                log(f"FAIL: {fig['accepted']} acknowledged, {queued} in the queue")
            links.purge(queues)
            accepted += fig["accepted"]
            report[name] = fig
            log(
                f"{name} {rate:.0f}/s for {seconds:.0f} s: accepted {fig['accepted']}"
                f" ({fig['accepted_per_s']:.0f}/s), 503 {fig['refused_503']}, ack p50"
                f" {fig['p50_ms']:.1f} p99 {fig['p99_ms']:.1f} p99.9 {fig['p99_9_ms']:.1f}"
                f" max {fig['max_ms']:.0f} ms; answered within 1 s {fig['within_1s']:.1%}"
                f" (max {fig['answered']['max_ms']:.0f} ms); over 100 ms {fig['over_100ms']},"
                f" longest silence {fig['longest_silence_ms']:.0f} ms"
            )
    finally:
        bench.teardown()
    print(json.dumps(report, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
