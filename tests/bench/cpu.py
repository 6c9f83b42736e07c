"""`python -m tests.bench.cpu`: CPU per message at one steady rate, per process, for
comparing two versions of the code on the same machine minutes apart (the full bench's
machine figures move between runs, by 2x on this shared host).

Starts the bench's stack (out-of-process fakes, isolated vhost and database), runs a
warm-up step, then `--steps` open-loop steps at `--rate` with the LLM answering at once,
and prints CPU milliseconds per message of each process (RabbitMQ and PostgreSQL included),
the database's commits per message and the latency, for each step and the median over the
steps. Every step is checked as the bench checks it:
nothing lost, duplicated or out of order.

With `--idle S` it first measures the stack doing nothing for S seconds (CPU ms per second
of each process, commits per second): what every message's figure carries at a low rate.

Usage: .venv/bin/python -m tests.bench.cpu [--rate 60] [--seconds 20] [--steps 3]
       [--idle 0] [--env PRIVACY_ENCRYPTION=false] [--statements] [--customers N]

`--customers N`: each step's messages come from N customers in turn (default, as the
bench's: rate x 4 and at least 100, each writing every ~4 s). Every step has customers of
its own, so with N at least rate x seconds every message is a first contact, and with N at
most the rate nearly every message is from a customer met a moment before: the two sides
of what a first contact costs.

`--statements` prints, per step, the statements the database ran per message (calls, time);
it needs `shared_preload_libraries = 'pg_stat_statements'` on the server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from tests.bench.run import Bench, Plan, log

STACK = (
    "ingress",
    "dedup",
    "conversation",
    "outbound",
    "api",
    "campaigns",
    "webhook_relay",
    "media",
)


def stack_cpu_ms(cost: dict[str, dict[str, float]], per: float) -> dict[str, float]:
    """CPU ms of each of the stack's processes (RabbitMQ and PostgreSQL included) divided by
    `per` (messages, or seconds), and their total."""
    out = {
        name.split(" ")[0]: 1000 * c["cpu_s"] / per
        for name, c in cost.items()
        if name in STACK or name.startswith(("postgres", "rabbitmq"))
    }
    out["total"] = sum(out.values())
    return out


def per_message(step: dict[str, Any]) -> dict[str, float]:
    """CPU ms per accepted message of each of the stack's processes, and their total."""
    return stack_cpu_ms(step["cost"], max(1, step["accepted"]))


def commits(bench: Bench) -> int:
    """The bench database's committed transactions so far. An idle backend flushes its
    statistics within 10 s (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): waited for first."""
    return db_counts(bench)[0]


def db_counts(bench: Bench) -> tuple[int, int]:
    """Committed transactions of the bench database, and WAL flushes (fsyncs) of the whole
    server, so far: a commit that waits for the flush costs one, shared with the commits
    that waited beside it. The server's other databases count too (keep them idle)."""
    assert bench.links is not None
    time.sleep(11)
    bench.links.sql("SELECT pg_stat_force_next_flush()")
    [row] = bench.links.sql(
        "SELECT xact_commit, (SELECT wal_sync FROM pg_stat_wal) AS wal_sync"
        " FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(row["xact_commit"]), int(row["wal_sync"])


def idle(bench: Bench, seconds: float) -> dict[str, float]:
    """CPU ms per second of each of the stack's processes, and the database's commits per
    second, over `seconds` of no traffic at all."""
    before = commits(bench)
    counted_from = time.monotonic()  # the count read, its 11 s wait behind it
    meter = bench.meter()
    meter.start()
    started = time.monotonic()
    time.sleep(seconds)
    cost = meter.stop()
    out = stack_cpu_ms(cost, time.monotonic() - started)
    after = commits(bench)  # its own 11 s wait is idle time counted too
    out["commits"] = (after - before) / (time.monotonic() - counted_from)
    return out


def reset_statements(bench: Bench) -> None:
    """Zero pg_stat_statements (needs it in shared_preload_libraries; see the docstring)."""
    assert bench.links is not None
    bench.links.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    bench.links.sql("SELECT pg_stat_statements_reset()")


def statements(bench: Bench, messages: int, top: int = 25) -> list[dict[str, Any]]:
    """The bench database's statements since `reset_statements`, by total time: calls and
    milliseconds per message, mean ms per call, and the statement's start."""
    assert bench.links is not None
    rows = bench.links.sql(
        "SELECT calls, total_exec_time, query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " ORDER BY total_exec_time DESC LIMIT $1",
        top,
    )
    n = max(1, messages)
    return [
        {
            "calls_per_msg": round(r["calls"] / n, 2),
            "ms_per_msg": round(r["total_exec_time"] / n, 3),
            "ms_per_call": round(r["total_exec_time"] / max(1, r["calls"]), 3),
            "query": " ".join(r["query"].split())[:160],
        }
        for r in rows
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests.bench.cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds measured idle first")
    parser.add_argument(
        "--customers",
        type=int,
        default=None,
        help="customers per step (default: rate x 4, at least 100)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra stack setting"
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="print each step's statements per message (pg_stat_statements preloaded)",
    )
    args = parser.parse_args(argv)
    bench = Bench(Plan.make(quick=True), dict(kv.split("=", 1) for kv in args.env))
    rows: list[dict[str, float]] = []
    idle_figures: dict[str, float] = {}
    failed = False
    try:
        bench.setup()
        bench.start()
        if args.idle > 0:
            idle_figures = idle(bench, args.idle)
            log(
                f"idle: {idle_figures['total']:.0f} CPU ms per second,"
                f" {idle_figures['commits']:.0f} commits per second"
            )
        for _ in range(args.steps):
            before, syncs_before = db_counts(bench)
            if args.statements:
                reset_statements(bench)
            step = bench.e2e_step(args.rate, args.seconds, llm=0.0, customers=args.customers)
            acc = step["accounting"]
            figures = per_message(step)
            # Transactions the database committed per message, and the WAL flushes they
            # waited for: unlike CPU, much the same on a fast machine and a slow one.
            after, syncs_after = db_counts(bench)
            figures["commits"] = (after - before) / max(1, step["accepted"])
            figures["wal_syncs"] = (syncs_after - syncs_before) / max(1, step["accepted"])
            figures["p50_ms"], figures["p99_ms"] = step["p50_ms"], step["p99_ms"]
            rows.append(figures)
            log(
                f"{args.rate:.0f}/s: {figures['total']:.1f} CPU ms and"
                f" {figures['commits']:.1f} commits and {figures['wal_syncs']:.1f} WAL flushes"
                f" per message, p50 {step['p50_ms']:.0f}"
                f" p99 {step['p99_ms']:.0f} ms, completion"
                f" {acc['answered'] / max(1, step['accepted']):.1%}, lost {acc['lost']}"
                f" dup {acc['duplicates']} ooo {acc['out_of_order']}"
            )
            if args.statements:
                for row in statements(bench, step["accepted"]):
                    log(
                        f"  {row['calls_per_msg']:6.2f} calls {row['ms_per_msg']:7.3f} ms"
                        f" ({row['ms_per_call']:.3f}/call)  {row['query']}"
                    )
            failed |= bool(acc["lost"] or acc["duplicates"] or acc["out_of_order"])
    finally:
        bench.teardown()
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]} if rows else {}
    report = {"rate": args.rate, "steps": rows, "median": median}
    if idle_figures:
        report["idle_per_second"] = idle_figures
    print(json.dumps(report, indent=1))
    return 1 if failed or bench.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
