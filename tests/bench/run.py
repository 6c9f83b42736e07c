"""`make bench`: start the stack, measure it against the machine's own ceilings, report.

One run measures, in this order (see the README's Performance section for what each means):
1. baselines: the load generator against a trivial endpoint, a signature-only aiohttp
   endpoint (HTTP), confirmed persistent publishes (broker), `append_to_stream` (database);
2. the peer (tests/bench/peer, a pywa bot) at the rates of step 3, LLM 0 ms, before our
   stack starts;
3. end to end with the LLM answering in 0 ms, then in 1 s: webhook posted -> reply at the
   fake Graph API at rising fixed rates until the pipeline piles up; with 1 s also ~1,000
   conversations waiting on the LLM at once while ingress is probed;
4. ingress alone (dedup stopped, deliveries stay in the durable queues and are counted):
   the most webhooks accepted per second, then ack latency at fixed open-loop rates;
5. cost: CPU seconds and peak RSS per service process in every measured phase.
It writes bench-results/<timestamp>/{results.json, results.md, latency.png}, copies the table
and plot to tests/bench/latest/, and exits 1 when any reply was lost, duplicated or out of
order (or an accepted webhook is missing from the queue).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from services.api.directory import ensure_default_business
from shared.broker.topology import stages
from shared.config import Settings
from shared.crypto.personal import mapper_with_keys
from shared.events.dedup import MessageReceived
from shared.eventstore import RecordedEvent
from shared.eventstore.postgres import PostgresEventStore, create_pool, init_connection
from shared.services import SERVICES
from shared.stack import ROOT
from tests.bench import peer, report
from tests.bench.fakes import FakeProcess
from tests.bench.loadgen import Generator, OpenRun, Traffic, message_index
from tests.bench.procstat import Meter
from tests.bench.stats import account, percentile, pile_up, stalls, summary_ms
from tests.e2e.harness import APP_SECRET, MASTER_KEY, Running, free_port, start_stack
from tests.support.infra import Infra, start_infra

GRAPH_TOKEN = "test-token"
OPENAI_KEY = "test-key"
LATEST = ROOT / "tests" / "bench" / "latest"
# The stack as `make up` runs it, except: replies go to the fakes, and Meta's top tier
# (1,000 messages/s per number) replaces the default 80/s, which would cap every figure.
STACK_ENV = {
    "WHATSAPP_RATE_PER_SECOND": "1000",
    # The loader's number, registered to the default business as `make up` registers it.
    "WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
    "WHATSAPP_ACCESS_TOKEN": GRAPH_TOKEN,
    "OPENAI_API_KEY": OPENAI_KEY,
    # The e2e harness shortens these for its tests; a deployment runs the defaults.
    **{
        name.upper(): str(getattr(Settings(), name))
        for name in (
            "retry_delay_ms",
            "ingress_publish_timeout",
            "breaker_reset_seconds",
            "openai_timeout",
            "whatsapp_timeout",
            "history_turns",
            "webhook_poll_interval",
            "log_level",
        )
    },
}
# No reply for this long while replies are still owed: the pipeline has stopped.
STALL_S = 15.0
PROBE_DELAY_S = 2.0
# The broker-hop baseline's rate: within what the pipeline reaches, where the broker's per
# message cost is not yet amortised by large batches.
HOP_RATE = 500
POSTGRES = "postgres (this db's backends; RSS of the largest)"
SERVER = [sys.executable, "-m", "tests.bench.ceilings"]


@dataclass
class Plan:
    quick: bool
    processes: int = 2
    connections: int = 64
    baseline_s: float = 5.0
    ingress_saturate_s: float = 8.0
    ingress_rates: list[float] = field(default_factory=lambda: [500, 1000, 2000, 4000])
    ingress_step_s: float = 8.0
    # The stall target's run: no ack over 100 ms in 60 s at 1,000/s.
    ingress_long_rate: float = 1000
    ingress_long_s: float = 60.0
    fast_rates: list[float] = field(
        default_factory=lambda: [50, 100, 150, 200, 300, 500, 750, 1000]
    )
    slow_rates: list[float] = field(default_factory=lambda: [50, 100, 200])
    step_s: float = 15.0
    conversations: int = 1000
    # Light on purpose: statuses make dedup and outbound work too, and a heavy probe would
    # measure its own load rather than the waiting conversations'.
    probe_rate: float = 100
    probe_s: float = 8.0
    bisect: bool = True
    drain_limit_s: float = 180.0

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            baseline_s=2.0,
            ingress_saturate_s=3.0,
            ingress_rates=[500, 1000],
            ingress_step_s=3.0,
            ingress_long_s=5.0,
            fast_rates=[100, 200],
            slow_rates=[50],
            step_s=5.0,
            probe_s=5.0,
            bisect=False,
            drain_limit_s=40.0,
        )


def log(*parts: Any) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *parts, flush=True)


# --- small adapters ---------------------------------------------------------------------------


class Links:
    """The harness's own connections to the broker and the database, opened once: on a
    shared machine PostgreSQL's connection slots can run out while the stack grows its
    pools, and a query of ours must not be the one refused."""

    def __init__(self, amqp_url: str, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db: asyncpg.Connection = self.run(asyncpg.connect(database_url))
        self.amqp, self.channel = self.run(self._open(amqp_url))
        self.database_url = database_url
        self.mapper: Any = None
        self.store_db: Any = None

    @staticmethod
    async def _open(amqp_url: str) -> tuple[Any, Any]:
        # No heartbeats: this loop runs only while the harness asks something, and minutes
        # can pass between two asks (the peer's phase); with heartbeats the broker drops
        # the connection as dead.
        sep = "&" if "?" in amqp_url else "?"
        connection = await aio_pika.connect(f"{amqp_url}{sep}heartbeat=0")
        return connection, await connection.channel()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def register_default(self, settings: Settings) -> None:
        """The default business and its number, as `make up` registers them: a number the
        directory knows (an unregistered one costs a database lookup on each message)."""
        pool = await create_pool(self.database_url, min_size=1, max_size=1)
        try:
            await ensure_default_business(pool, settings)
        finally:
            await pool.close()

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return self.run(self.db.fetch(query, *args))

    def events_of_type(self, type_: str) -> list[RecordedEvent]:
        """Every event of this type, opened with the deployment's keys (the data is sealed
        in the table: PRIVACY_ENCRYPTION is on by default)."""

        async def go() -> list[RecordedEvent]:
            if self.mapper is None:  # its own connection, with the store's jsonb codec
                self.store_db = await asyncpg.connect(self.database_url)
                await init_connection(self.store_db)
                self.mapper = await mapper_with_keys(self.store_db, MASTER_KEY)
            store = PostgresEventStore(conn=self.store_db, mapper=self.mapper)
            return await store.read_after(types=[type_], limit=10_000_000)

        return self.run(go())

    def depths(self, names: list[str]) -> dict[str, int]:
        async def go() -> dict[str, int]:
            depths = {}
            for name in names:
                queue = await self.channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count or 0
            return depths

        return self.run(go())

    def purge(self, names: list[str]) -> None:
        async def go() -> None:
            for name in names:
                queue = await self.channel.declare_queue(name, passive=True)
                await queue.purge()

        self.run(go())

    def close(self) -> None:
        closings = [self.db.close(), self.amqp.close()]
        if self.store_db is not None:
            closings.append(self.store_db.close())
        for closing in closings:
            try:
                self.run(closing)
            except BaseException:  # closing a connection the broker dropped: nothing to do
                pass
        self.loop.close()


def stage_queues(running: Running, names: tuple[str, ...] | None = None) -> list[str]:
    all_stages = stages(running.stack.settings)
    return [
        q
        for name, st in all_stages.items()
        if names is None or name in names
        for q in [*st.queues, st.retry_queue]
    ]


def wait_idle(links: Links, running: Running, limit: float) -> float:
    """Wait until every stage queue is empty (ready messages); returns the seconds waited."""
    started = time.monotonic()
    names = stage_queues(running)
    while time.monotonic() - started < limit:
        if sum(links.depths(names).values()) == 0:
            break
        time.sleep(0.3)
    return time.monotonic() - started


def scrape(running: Running) -> dict[str, dict[str, float]]:
    """The counters the cost figures need, summed over labels, per service."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        "events_processed_total": "consumed",
        "eventstore_append_duration_seconds_count": "appends",
        "upstream_request_duration_seconds_count": "upstream_calls",
        "webhooks_received_total": "webhooks",
    }
    result: dict[str, dict[str, float]] = {}
    for name in SERVICES:
        port = running.stack.settings.port_of(name)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        totals = dict.fromkeys(wanted.values(), 0.0)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    totals[wanted[sample.name]] += sample.value
        result[name] = totals
    return result


def _delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict:
    totals: dict[str, float] = {}
    for service, values in after.items():
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value - before.get(service, {}).get(key, 0.0)
    return totals


def machine_info(links: Links) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kib = 0
    try:
        rabbit = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rabbit = "unknown"
    postgres = links.sql("SHOW server_version")[0][0]
    connections = links.sql(
        "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
    )[0]
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": rabbit,
        "postgresql": postgres,
        "loadavg_before": os.getloadavg(),
        "postgres_connections_before": f"{connections[0]} of {connections[1]}",
    }


def timeline_by_second(
    scheduled: list[float], latencies: list[float | None], start: float
) -> list[dict[str, float]]:
    """Per second of the schedule: messages sent, answered, and their p50/p99 (ms), to see
    a backlog build or a start-up transient."""
    buckets: dict[int, list[float | None]] = {}
    for t, lat in zip(scheduled, latencies, strict=True):
        buckets.setdefault(int(t - start), []).append(lat)
    rows = []
    for second in sorted(buckets):
        lats = buckets[second]
        done = [x for x in lats if x is not None]
        rows.append(
            {
                "second": second,
                "sent": len(lats),
                "answered": len(done),
                "p50_ms": percentile(done, 50) * 1e3,
                "p99_ms": percentile(done, 99) * 1e3,
            }
        )
    return rows


def machine_load() -> dict[str, float]:
    """Counters for how busy the whole machine was (other people's work included)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]
    stall = math.nan
    try:  # pressure stall information: time some runnable task waited for a CPU
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        stall = int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        pass
    return {
        "time": time.monotonic(),
        "busy_s": (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"),
        "cpu_stall_s": stall,
    }


def load_over(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    elapsed = after["time"] - before["time"]
    return {
        "machine_cpu_busy": (after["busy_s"] - before["busy_s"]) / elapsed / (os.cpu_count() or 1),
        "cpu_pressure": (after["cpu_stall_s"] - before["cpu_stall_s"]) / elapsed,
    }


def _beam_pid() -> int | None:
    """The RabbitMQ node's process (shared with everyone using this broker)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"beam.smp" in cmdline and b"rabbit" in cmdline:
            return int(entry.name)
    return None


# --- the run ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, extra_env: dict[str, str]) -> None:
        self.plan = plan
        self.extra_env = extra_env
        self.results: dict[str, Any] = {"plan": asdict(plan)}
        self.infra: Infra | None = None
        self.links: Links | None = None
        self.graph: FakeProcess | None = None
        self.openai: FakeProcess | None = None
        self.gen: Generator | None = None
        self.running: Running | None = None
        self.servers: list[subprocess.Popen[bytes]] = []
        self.failures: list[str] = []
        self._step = 0

    # -- lifecycle --

    def setup(self) -> None:
        log("isolated vhost and database")
        self.infra = start_infra()
        self.links = Links(self.infra.amqp_url, self.infra.database_url)
        self.results["machine"] = machine_info(self.links)
        log("fakes (own processes), generator processes:", self.plan.processes)
        self.graph = FakeProcess("graph", GRAPH_TOKEN)
        self.openai = FakeProcess("openai", OPENAI_KEY)
        # Two runs at once (the slow-LLM burst and the ingress probe) need two sets.
        self.gen = Generator(self.plan.processes, concurrent_runs=2)

    def teardown(self) -> None:
        """Every step, whatever the others did: the vhost and database must not be left."""
        steps: list[Any] = []
        if self.running is not None:
            steps.append(self.running.stack.down)
        if self.links is not None:
            steps.append(self.links.close)
        steps += [s.terminate for s in self.servers if s.poll() is None]
        steps += [f.stop for f in (self.graph, self.openai) if f is not None]
        if self.gen is not None:
            steps.append(self.gen.close)
        if self.infra is not None:
            steps.append(self.infra.cleanup)
        for step in steps:
            try:
                step()
            except BaseException as exc:  # a dead broker connection raises CancelledError
                log(f"teardown: {getattr(step, '__qualname__', step)}: {type(exc).__name__}")

    def _server(self, kind: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        proc = subprocess.Popen(
            [*SERVER, kind, "--port", str(port), "--secret", APP_SECRET],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{kind} server did not start")
        self.servers.append(proc)
        return f"http://127.0.0.1:{port}", proc

    def _stop_server(self, proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(timeout=10)

    def traffic(self, kind: str = "text", customers: int = 1000) -> Traffic:
        """Fresh customers and message ids for every step, so no step sees another's."""
        self._step += 1
        return Traffic(kind, f"s{self._step}", f"49{self._step:03d}", customers)

    # -- open-loop helpers --

    def open_loop(
        self, base_url: str, traffic: Traffic, rate: float, duration: float, lead: float = 1.0
    ) -> OpenRun:
        assert self.gen is not None
        return self.gen.start_open(
            base_url, APP_SECRET, traffic, rate, duration, self.plan.connections, lead=lead
        )

    @staticmethod
    def ack_figures(res: dict[str, Any], rate: float, duration: float) -> dict[str, Any]:
        ok = [
            d - s
            for d, s, st in zip(res["done"], res["scheduled"], res["status"], strict=True)
            if st == 200
        ]
        # How soon a webhook turned away (503: Meta retries it) was answered.
        refused = [
            d - s
            for d, s, st in zip(res["done"], res["scheduled"], res["status"], strict=True)
            if st == 503
        ]
        lag = [se - s for se, s in zip(res["sent"], res["scheduled"], strict=True)]
        statuses: dict[str, int] = {}
        for st in res["status"]:
            statuses[str(st)] = statuses.get(str(st), 0) + 1
        span = (max(res["done"]) - min(res["scheduled"])) if res["done"] else math.nan
        return {
            "offered_per_s": rate,
            "duration_s": duration,
            "requests": len(res["status"]),
            "accepted": len(ok),
            "errors": len(res["status"]) - len(ok),
            "statuses": statuses,
            "accepted_per_s": len(ok) / span if span else math.nan,
            "refused_503": len(refused),
            "refused_p99_ms": percentile(refused, 99) * 1e3 if refused else math.nan,
            **summary_ms(ok),
            # How late the generator itself sent (its own limit, not the server's).
            "send_lag_p99_ms": percentile(lag, 99) * 1e3,
            "generator_cpu_s": res["generator_cpu_s"],
        }

    # -- 1. baselines --

    def baselines(self) -> None:
        assert self.gen is not None and self.infra is not None
        p = self.plan
        b: dict[str, Any] = {}
        log("baseline: load generator against a trivial endpoint")
        url, proc = self._server("trivial")
        sat = self.gen.saturate(
            url, APP_SECRET, Traffic(), p.baseline_s, p.connections, 40_000 * int(p.baseline_s)
        )
        # The open-loop generator at the highest rate it will offer ingress: its own
        # latency floor and lateness, so a server's figure can be told from the generator's.
        top = max(p.ingress_rates)
        res = self.open_loop(url, Traffic(), top, p.ingress_step_s).result()
        b["loadgen"] = {
            "max_per_s": sat["per_s"],
            "errors": sum(n for c, n in sat["statuses"].items() if c != 200),
            "processes": p.processes,
            "connections_per_process": p.connections,
            "exhausted_bodies": sat["exhausted"],
            "open_loop": self.ack_figures(res, top, p.ingress_step_s),
        }
        self._stop_server(proc)

        log("baseline: signature-only aiohttp endpoint (HTTP ceiling)")
        url, proc = self._server("http")
        meter = Meter({"server": [proc.pid]})
        meter.start()
        sat = self.gen.saturate(
            url, APP_SECRET, Traffic(), p.baseline_s, p.connections, 30_000 * int(p.baseline_s)
        )
        cost = meter.stop()["server"]
        single = self.gen.run_one(
            {
                "kind": "sequential",
                "base_url": url,
                "secret": APP_SECRET,
                "traffic": Traffic(),
                "count": 300,
            }
        )
        http: dict[str, Any] = {
            "max_per_s": sat["per_s"],
            "errors": sum(n for c, n in sat["statuses"].items() if c != 200),
            "cpu_s_per_1000": cost["cpu_s"] / max(1, sat["ok"]) * 1000,
            "unloaded": summary_ms(single["latencies"]),
            "at_rate": {},
        }
        # The rates ingress is driven at, and the probe's, for ratios at the same rate.
        for rate in sorted({*p.ingress_rates, p.probe_rate}):
            res = self.open_loop(url, Traffic(), rate, p.ingress_step_s).result()
            http["at_rate"][str(int(rate))] = self.ack_figures(res, rate, p.ingress_step_s)
        b["http"] = http
        self._stop_server(proc)

        log("baseline: persistent publishes with confirms (broker ceiling)")
        broker = self.gen.run_one(
            {
                "kind": "broker",
                "amqp_url": self.infra.amqp_url,
                "duration": p.baseline_s,
                "in_flight": 500,
            }
        )
        b["broker"] = {
            "per_s": broker["per_s"],
            "in_flight": 500,
            "body_bytes": broker["body_bytes"],
            "loaded": summary_ms(broker["latencies"]),
            "unloaded": summary_ms(broker["single"]),
            "client_cpu_s_per_1000": broker["client_cpu_s_per_1000"],
        }
        log(f"baseline: one broker hop at {HOP_RATE}/s (the broker's CPU per hop)")
        beam = _beam_pid()
        meter = Meter({"broker": [beam] if beam else []})
        meter.start()
        hop = self.gen.run_one(
            {
                "kind": "broker_hop",
                "amqp_url": self.infra.amqp_url,
                "rate": HOP_RATE,
                "duration": p.baseline_s,
            }
        )
        spent = meter.stop()["broker"]["cpu_s"]
        b["broker_hop"] = {
            "rate_per_s": HOP_RATE,
            "count": hop["count"],
            "broker_cpu_ms_per_hop": spent / max(1, hop["count"]) * 1000 if beam else None,
        }
        log("baseline: append_to_stream through asyncpg (database ceiling)")
        db = self.gen.run_one(
            {
                "kind": "database",
                "database_url": self.infra.database_url,
                "duration": p.baseline_s,
                "concurrency": 32,
            }
        )
        b["database"] = {
            "appends_per_s": db["per_s"],
            "batched_events_per_s": db["batched_events_per_s"],
            "concurrency": 32,
            "pool": 10,
            "loaded": summary_ms(db["latencies"]),
            "unloaded": summary_ms(db["single"]),
            "client_cpu_s_per_1000": db["client_cpu_s_per_1000"],
        }
        self.results["baselines"] = b
        log(
            "baselines:",
            f"loadgen {b['loadgen']['max_per_s']:.0f}/s, http {http['max_per_s']:.0f}/s,",
            f"broker {b['broker']['per_s']:.0f}/s, db {b['database']['appends_per_s']:.0f}/s",
        )

    # -- the stack --

    def start(self) -> None:
        assert self.infra is not None and self.graph is not None and self.openai is not None
        log("starting the stack")
        env = {
            **STACK_ENV,
            "WHATSAPP_API_URL": self.graph.url,
            "OPENAI_BASE_URL": self.openai.url,
            **self.extra_env,
        }
        self.running = start_stack(self.infra.amqp_url, self.infra.database_url, **env)
        # start_stack also starts in-thread fakes; the services were pointed at ours instead.
        for fake in (self.running.graph, self.running.openai, self.running.elevenlabs):
            if fake is not None:
                fake.stop()
        settings = self.running.stack.settings
        assert self.links is not None
        self.links.run(self.links.register_default(settings))
        self.results["stack"] = {
            "services": list(self.service_pids()),
            "env_overrides": {**STACK_ENV, **self.extra_env},
            "prefetch": settings.prefetch,
            "conversation_prefetch": settings.conversation_prefetch,
            "queues_per_stage": settings.queues_of("dedup"),
            "whatsapp_rate_per_second": settings.whatsapp_rate_per_second,
        }
        log("warm-up: 100 messages end to end")
        step = self.e2e_step(50, 2.0, llm=0.0, record=False)
        if step["accounting"]["answered"] < step["accepted"]:
            raise RuntimeError(f"warm-up: the pipeline did not answer: {step['accounting']}")

    def service_pids(self) -> dict[str, int]:
        assert self.running is not None
        return {s: pid for s in SERVICES if (pid := self.running.stack.pid(s)) is not None}

    def meter(self) -> Meter:
        assert self.running is not None and self.graph is not None and self.openai is not None
        assert self.gen is not None and self.infra is not None
        groups = {name: [pid] for name, pid in self.service_pids().items()}
        dbname = self.infra.database_url.rsplit("/", 1)[1]
        assert self.links is not None
        backends = self.links.sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            dbname,
        )
        groups[POSTGRES] = [r["pid"] for r in backends]
        beam = _beam_pid()
        groups["rabbitmq (whole node, shared)"] = [beam] if beam else []
        groups["fake graph"] = [self.graph.pid]
        groups["fake openai"] = [self.openai.pid]
        groups["load generator"] = self.gen.pids()
        return Meter(groups, shared_memory=(POSTGRES,))

    # -- 2. ingress --

    def ingress(self) -> None:
        assert self.running is not None and self.gen is not None
        p = self.plan
        running = self.running
        url = running.ingress_url
        dedup_queues = stage_queues(running, ("dedup",))
        log("ingress alone: dedup stopped, deliveries wait in the durable queues")
        running.stack.stop("dedup")
        assert self.links is not None
        before = sum(self.links.depths(dedup_queues).values())
        meter = self.meter()
        meter.start()
        sat = self.gen.saturate(
            url,
            APP_SECRET,
            self.traffic(customers=10_000),
            p.ingress_saturate_s,
            p.connections,
            12_000 * int(p.ingress_saturate_s),
        )
        cost = meter.stop()
        result: dict[str, Any] = {
            "max_per_s": sat["per_s"],
            "saturation": {
                "statuses": {str(k): v for k, v in sat["statuses"].items()},
                "in_flight": p.connections * p.processes,
                **summary_ms(sat["latencies"]),
            },
            "cost": cost,
            "cost_messages": sat["ok"],
            "at_rate": {},
        }
        accepted = sat["ok"]
        for rate in p.ingress_rates:
            res = self.open_loop(
                url, self.traffic(customers=10_000), rate, p.ingress_step_s
            ).result()
            fig = self.ack_figures(res, rate, p.ingress_step_s)
            result["at_rate"][str(int(rate))] = fig
            accepted += fig["accepted"]
            log(
                f"ingress {rate:.0f}/s: p50 {fig['p50_ms']:.1f} p99 {fig['p99_ms']:.1f} ms,"
                f" errors {fig['errors']}"
            )
            if fig["accepted_per_s"] < 0.95 * rate:
                # Over capacity: a higher rate only queues longer (and takes longer to run).
                log("ingress fell behind the offered rate; higher rates skipped")
                break
        rate, seconds = p.ingress_long_rate, p.ingress_long_s
        res = self.open_loop(url, self.traffic(customers=10_000), rate, seconds).result()
        fig = {**self.ack_figures(res, rate, seconds), **stalls(res)}
        result["long"] = fig
        accepted += fig["accepted"]
        log(
            f"ingress {rate:.0f}/s for {seconds:.0f} s: p99 {fig['p99_ms']:.1f} max"
            f" {fig['max_ms']:.0f} ms, {fig['over_100ms']} acks over 100 ms, longest silence"
            f" {fig['longest_silence_ms']:.0f} ms"
        )
        after = sum(self.links.depths(dedup_queues).values())
        queued = after - before
        result["durable"] = {"accepted": accepted, "queued": queued, "ok": queued >= accepted}
        if queued < accepted:
            self.failures.append(
                f"ingress: {accepted} webhooks acknowledged, {queued} in the queue"
            )
        log(f"ingress: max {sat['per_s']:.0f}/s; {accepted} acknowledged, {queued} queued")
        self.links.purge(dedup_queues)
        running.restart("dedup")
        self.results["ingress"] = result

    # -- 3. end to end --

    def e2e_step(
        self,
        rate: float,
        duration: float,
        llm: float,
        record: bool = True,
        customers: int | None = None,
        probe: bool = False,
    ) -> dict[str, Any]:
        """One open-loop run of customer messages; waits for the replies it is owed."""
        assert self.running is not None and self.graph is not None and self.openai is not None
        running = self.running
        customers = customers or max(100, int(rate * 4))  # each customer writes every ~4 s
        traffic = self.traffic(customers=customers)
        self.graph.reset()
        self.openai.reset()
        meter = self.meter()
        counters_before = scrape(running)
        meter.start()
        run = self.open_loop(running.ingress_url, traffic, rate, duration)
        probe_run = None
        if probe:
            # From 2 s after the burst began: ingress while the conversations wait, not while
            # the burst itself is being posted (its own acks are reported apart).
            probe_run = self.open_loop(
                running.ingress_url,
                self.traffic("status"),
                self.plan.probe_rate,
                self.plan.probe_s,
                lead=run.t0 - time.monotonic() + PROBE_DELAY_S,
            )
        sends: list[tuple[str, str, float]] = []
        samples: list[tuple[float, int, int]] = []  # (time, replies so far, LLM in flight)
        while not (run.ready() and (probe_run is None or probe_run.ready())):
            time.sleep(0.1 if probe else 0.25)
            sends += self.graph.new_sends()
            if probe or llm > 0:
                samples.append((time.monotonic(), len(sends), self.openai.stats()["in_flight"]))
        res = run.result()

        def sample(now: float) -> None:
            if llm > 0 or probe:
                assert self.openai is not None
                samples.append((now, len(sends), self.openai.stats()["in_flight"]))

        drain_s = self._drain(traffic, res, sends, sample)
        cost = meter.stop()
        counters = _delta(scrape(running), counters_before)
        llm_peak = self.openai.stats()["peak_in_flight"]
        assert self.links is not None
        idle_s = wait_idle(self.links, running, 60)

        step = self._e2e_figures(traffic, res, sends, rate, duration, llm)
        step.update(
            drain_s=drain_s,
            idle_wait_s=idle_s,
            llm_peak_in_flight=llm_peak,
            cost=cost,
            counters=counters,
            per_message={
                k: v / max(1, step["accepted"]) for k, v in counters.items() if k != "webhooks"
            },
        )
        if probe_run is not None:
            step["probe"] = self.ack_figures(
                probe_run.result(), self.plan.probe_rate, self.plan.probe_s
            )
            step["pending"] = self._pending(
                res, samples, run.t0, (probe_run.t0, probe_run.t0 + self.plan.probe_s)
            )
        if record:
            acc = step["accounting"]
            if acc["lost"] or acc["duplicates"] or acc["out_of_order"]:
                self.failures.append(
                    f"e2e {rate:.0f}/s llm {llm:.0f}s: lost {acc['lost']}, duplicated "
                    f"{acc['duplicates']}, out of order {acc['out_of_order']}"
                )
        return step

    def _drain(
        self,
        traffic: Traffic,
        res: dict[str, Any],
        sends: list[tuple[str, str, float]],
        sample: Any = None,
    ) -> float:
        """Collect replies (into `sends`) until every acknowledged message is answered, or
        none came for STALL_S, or the drain limit passed; returns the seconds it took."""
        assert self.graph is not None
        accepted_ids = {i for i, st in zip(res["index"], res["status"], strict=True) if st == 200}
        answered: set[int] = set()

        def note(new: list[tuple[str, str, float]]) -> None:
            for _, text, _ in new:
                i = message_index(traffic.tag, text)
                if i is not None:
                    answered.add(i)

        note(sends)
        drain_started = last_progress = time.monotonic()
        while not accepted_ids <= answered:
            new = self.graph.new_sends()
            if new:
                sends += new
                note(new)
                last_progress = time.monotonic()
            now = time.monotonic()
            if now - last_progress > STALL_S or now - drain_started > self.plan.drain_limit_s:
                break
            if sample is not None:
                sample(now)
            time.sleep(0.25)
        drain_s = time.monotonic() - drain_started
        time.sleep(0.5)
        sends += self.graph.new_sends()
        return drain_s

    @staticmethod
    def _pending(
        res: dict[str, Any],
        samples: list[tuple[float, int, int]],
        t0: float,
        window: tuple[float, float],
    ) -> dict[str, Any]:
        """Conversations waiting (message due, reply not yet received) over time, and while
        the probe ran."""
        scheduled = sorted(res["scheduled"])
        series = []
        during: list[int] = []
        for when, replies, in_flight in samples:
            waiting = sum(1 for s in scheduled if s <= when) - replies  # small lists: fine
            series.append((round(when - t0, 2), waiting, in_flight))
            if window[0] <= when <= window[1]:
                during.append(waiting)
        return {
            "peak_waiting": max((s[1] for s in series), default=0),
            "waiting_during_probe_min": min(during, default=0),
            "waiting_during_probe_median": sorted(during)[len(during) // 2] if during else 0,
            "peak_llm_in_flight_sampled": max((s[2] for s in series), default=0),
            "series": series,
        }

    def _e2e_figures(
        self,
        traffic: Traffic,
        res: dict[str, Any],
        sends: list[tuple[str, str, float]],
        rate: float,
        duration: float,
        llm: float,
        recorded_order: bool = True,
    ) -> dict[str, Any]:
        """recorded_order: replies must follow the order the pipeline recorded (its
        `MessageReceived` sequence); without a store (the peer), the posting order."""
        scheduled = dict(zip(res["index"], res["scheduled"], strict=True))
        status = dict(zip(res["index"], res["status"], strict=True))
        first_reply: dict[int, float] = {}
        replies: list[tuple[str, str]] = []
        foreign = 0
        for to, text, received_at in sends:
            i = message_index(traffic.tag, text)
            if i is None:
                foreign += 1
                continue
            replies.append((to, str(i)))
            first_reply.setdefault(i, received_at)
        accepted: dict[str, list[str]] = {}
        for i in res["index"]:
            if status[i] == 200:
                accepted.setdefault(traffic.customer(i), []).append(str(i))
        inbox = self._recorded_order(traffic) if recorded_order else None
        unacked = [str(i) for i in res["index"] if status[i] != 200]
        acc = account(accepted, replies, inbox, unacked)
        latencies = [
            (first_reply[i] - scheduled[i]) if i in first_reply else None for i in res["index"]
        ]
        answered = [x for x in latencies if x is not None]
        last = max(res["scheduled"]) if res["scheduled"] else 0.0
        first = min(res["scheduled"]) if res["scheduled"] else 0.0
        timeline = timeline_by_second(res["scheduled"], latencies, first)
        verdict = pile_up(
            res["scheduled"],
            latencies,
            len(res["index"]),
            sum(1 for s in res["status"] if s != 200),
            deadline=last + llm + 2.0,
        )
        makespan = (max(first_reply.values()) - first) if first_reply else math.nan
        acks = self.ack_figures(res, rate, duration)
        return {
            "offered_per_s": rate,
            "duration_s": duration,
            "llm_s": llm,
            "customers": traffic.customers,
            "messages": len(res["index"]),
            "accepted": acks["accepted"],
            "ack": {
                k: acks[k]
                for k in (
                    "p50_ms",
                    "p99_ms",
                    "p99_9_ms",
                    "max_ms",
                    "errors",
                    "refused_503",
                    "refused_p99_ms",
                )
            },
            "send_lag_p99_ms": acks["send_lag_p99_ms"],
            # Replies over the time from the first send to the last reply.
            "replies_per_s": len(first_reply) / makespan if makespan else math.nan,
            **summary_ms(answered),
            "sustained": verdict.sustained,
            "completion": verdict.completion,
            "p99_first_third_ms": verdict.p99_first_ms,
            "p99_last_third_ms": verdict.p99_last_ms,
            "why_not": verdict.reasons,
            "timeline": timeline,
            "accounting": {
                "expected": acc.expected,
                "answered": acc.answered,
                "lost": acc.lost,
                "duplicates": acc.duplicates,
                "out_of_order": acc.out_of_order,
                "unacknowledged_answered": acc.unacknowledged_answered,
                "foreign_replies": foreign,
                "lost_sample": acc.lost_ids[:10],
            },
        }

    def _recorded_order(self, traffic: Traffic) -> dict[str, list[str]]:
        assert self.links is not None
        ours = f"wamid.{traffic.tag}."
        received = sorted(
            (
                r
                for r in self.links.events_of_type("MessageReceived")
                if isinstance(r.event, MessageReceived) and r.event.wamid.startswith(ours)
            ),
            key=lambda r: (r.stream, r.version),
        )
        inbox: dict[str, list[str]] = {}
        for r in received:
            assert isinstance(r.event, MessageReceived)
            inbox.setdefault(r.event.customer, []).append(r.event.wamid.rsplit(".", 1)[1])
        return inbox

    def ladder(self, rates: list[float], llm: float, run_step: Any = None) -> dict[str, Any]:
        """Rising rates until one piles up, then one bisection (ours, or the peer's)."""
        run_step = run_step or self.run_step
        p = self.plan
        steps: list[dict[str, Any]] = []
        passed: float | None = None
        failed: float | None = None
        for rate in rates:
            step = run_step(rate, llm)
            steps.append(step)
            if step["sustained"]:
                passed = rate
            else:
                failed = rate
                break
        if p.bisect and passed is None and failed is not None:
            # Even the first rate piled up: try half of it, so the run still has a figure.
            mid = round(failed / 2 / 5) * 5
            step = run_step(mid, llm)
            steps.append(step)
            if step["sustained"]:
                passed = mid
            else:
                failed = mid
        elif p.bisect and passed is not None and failed is not None and failed / passed > 1.2:
            mid = round((passed + failed) / 2 / 10) * 10
            step = run_step(mid, llm)
            steps.append(step)
            if step["sustained"]:
                passed = mid
            else:
                failed = mid
        return {
            "llm_s": llm,
            "steps": sorted(steps, key=lambda s: s["offered_per_s"]),
            "max_sustained_per_s": passed,
            "first_piled_up_per_s": failed,
        }

    def run_step(self, rate: float, llm: float) -> dict[str, Any]:
        step = self.e2e_step(rate, self.plan.step_s, llm)
        acc = step["accounting"]
        log(
            f"e2e llm {llm:.0f}s {rate:.0f}/s: p50 {step['p50_ms']:.0f} p99 {step['p99_ms']:.0f}"
            f" p99.9 {step['p99_9_ms']:.0f} ms, completion {step['completion']:.1%},"
            f" {'sustained' if step['sustained'] else 'PILES UP: ' + '; '.join(step['why_not'])};"
            f" lost {acc['lost']} dup {acc['duplicates']} ooo {acc['out_of_order']}"
        )
        return step

    def end_to_end(self) -> None:
        assert self.openai is not None
        self.openai.set_latency(0.0)
        e2e = self.results.setdefault("e2e", {})
        e2e["llm_0ms"] = self.ladder(self.plan.fast_rates, 0.0)
        self.openai.set_latency(1.0)
        e2e["llm_1s"] = self.ladder(self.plan.slow_rates, 1.0)
        n = self.plan.conversations
        log(
            f"{n} conversations at once on a 1 s LLM,"
            f" ingress probed at {self.plan.probe_rate:.0f}/s"
        )
        burst = self.e2e_step(n, 1.0, llm=1.0, customers=n, probe=True)
        acc = burst["accounting"]
        log(
            f"burst: peak waiting {burst['pending']['peak_waiting']}, LLM peak in flight"
            f" {burst['llm_peak_in_flight']}, probe ack p99 {burst['probe']['p99_ms']:.1f} ms,"
            f" all answered after {burst['max_ms'] / 1e3:.1f} s; lost {acc['lost']}"
        )
        self.results["e2e"]["llm_1s"]["conversations"] = burst
        self.openai.set_latency(0.0)

    # -- 5. the peer --

    def peer(self) -> None:
        """The pywa bot (tests/bench/peer) at the same rates, through the same fakes and
        loader, while our stack is not running (neither competes with the other)."""
        assert self.graph is not None and self.openai is not None
        if not peer.available():
            log("peer: no .venv-peer (make bench makes it): skipped")
            self.results["peer"] = {"skipped": "no .venv-peer"}
            return
        log(f"peer: {peer.NAME}, LLM 0 ms, the same rates")
        self.openai.set_latency(0.0)

        def fresh() -> peer.PeerProcess:
            # A new process for every rate: a rate the peer could not keep leaves it with
            # background tasks still timing out, which would count against the next rate.
            # (Ours needs no restart: every step waits until its backlog is answered.)
            proc = peer.PeerProcess(
                free_port(), self.graph.url, self.openai.url, APP_SECRET, GRAPH_TOKEN, OPENAI_KEY
            )
            try:
                warm = self.peer_step(proc, 50, 2.0)
            except BaseException:
                proc.stop()
                raise
            if warm["accounting"]["answered"] == 0:
                proc.stop()
                raise RuntimeError(f"warm-up: the peer did not answer: {warm['accounting']}")
            return proc

        def step(rate: float, llm: float) -> dict[str, Any]:
            proc = fresh()
            try:
                figures = self.peer_step(proc, rate, self.plan.step_s)
            finally:
                proc.stop()
            acc = figures["accounting"]
            log(
                f"peer {rate:.0f}/s: p50 {figures['p50_ms']:.0f} p99"
                f" {figures['p99_ms']:.0f} ms, completion {figures['completion']:.1%},"
                f" {'sustained' if figures['sustained'] else 'PILES UP'};"
                f" lost {acc['lost']} dup {acc['duplicates']} ooo {acc['out_of_order']}"
            )
            return figures

        self.results["peer"] = {
            "name": peer.NAME,
            "llm_0ms": self.ladder(self.plan.fast_rates, 0.0, step),
        }

    def peer_step(self, proc: peer.PeerProcess, rate: float, duration: float) -> dict[str, Any]:
        assert self.graph is not None and self.openai is not None and self.gen is not None
        traffic = self.traffic(customers=max(100, int(rate * 4)))
        self.graph.reset()
        self.openai.reset()
        meter = Meter(
            {
                "peer": [proc.pid],
                "fake graph": [self.graph.pid],
                "fake openai": [self.openai.pid],
                "load generator": self.gen.pids(),
            }
        )
        meter.start()
        run = self.open_loop(proc.url, traffic, rate, duration)
        sends: list[tuple[str, str, float]] = []
        while not run.ready():
            time.sleep(0.25)
            sends += self.graph.new_sends()
        res = run.result()
        drain_s = self._drain(traffic, res, sends)
        cost = meter.stop()
        # pywa answers the business-scoped user id ("US.<number>" in the bench's traffic).
        sends = [(to.removeprefix("US."), text, at) for to, text, at in sends]
        figures = self._e2e_figures(traffic, res, sends, rate, duration, 0.0, False)
        figures.update(drain_s=drain_s, cost=cost)
        return figures

    # -- all --

    def run(self) -> None:
        started = time.monotonic()
        load_before = machine_load()
        try:
            self.setup()
            self.baselines()
            self.peer()
            self.start()
            self.end_to_end()
            # Last: it leaves tens of thousands of deliveries to purge, and the broker's
            # clean-up after that would slow whatever came next.
            self.ingress()
        finally:
            self.results.setdefault("machine", {})["loadavg_after"] = os.getloadavg()
            self.results["machine"].update(load_over(load_before, machine_load()))
            self.results["probe_delay_s"] = PROBE_DELAY_S
            self.results["duration_s"] = time.monotonic() - started
            self.results["failures"] = self.failures
            self.teardown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under 2 minutes")
    parser.add_argument("--out", type=Path, help="results folder (default bench-results/<ts>)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--no-latest",
        action="store_true",
        help="do not copy the table and plot to tests/bench/latest (a --quick run never does)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra stack setting"
    )
    args = parser.parse_args(argv)
    plan = Plan.make(args.quick)
    plan.processes = args.processes
    extra = dict(kv.split("=", 1) for kv in args.env)
    out = args.out or ROOT / "bench-results" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(plan, extra)
    try:
        bench.run()
    except Exception as exc:
        # Keep what was measured (results.json) for a look, but it is no result: no table
        # and nothing copied to tests/bench/latest.
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        (out / "results.json").write_text(json.dumps(bench.results, indent=1, default=str))
        log(f"the run failed ({bench.results['error']}); what it measured is in {out}")
        raise
    (out / "results.json").write_text(json.dumps(bench.results, indent=1, default=str))
    report.write(bench.results, out)
    log(f"results in {out}")
    # Only a full run is published: a quick one would replace the README's figures with
    # short, noisier ones.
    if not args.no_latest and not args.quick:
        LATEST.mkdir(parents=True, exist_ok=True)
        for name in ("results.md", "latency.png"):
            shutil.copy(out / name, LATEST / name)
        log(f"table and plot copied to {LATEST}")
    if bench.failures:
        for failure in bench.failures:
            log("FAIL:", failure)
        return 1
    log("no reply lost, duplicated or out of order")
    return 0
