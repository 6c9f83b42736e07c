"""Observability, checked against the running processes: metrics that count what was sent,
a dashboard and alert rules that only use metrics the services export, a real Prometheus that
scrapes every target, one trace per customer message, and logs without personal data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.payloads import messages_payload, status_payload, text_message
from shared.services import SERVICES
from shared.stack import ROOT
from tests.e2e.harness import Running, free_port, new_customer, start_stack
from tests.support.fakes import wait_for
from tests.support.infra import start_infra
from tests.support.otlp import FakeOTLPCollector

DEPLOY = ROOT / "deploy"
PHONE_NUMBER_ID = "100000000000001"


def scrape(bot: Running, service: str) -> str:
    port = bot.stack.settings.port_of(service)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def exported_names(bot: Running) -> set[str]:
    """Every series name the services export (what a PromQL expression can refer to)."""
    names: set[str] = set()
    for service in SERVICES:
        for family in text_string_to_metric_families(scrape(bot, service)):
            names.add(family.name)
            names.update(s.name for s in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def test_every_services_metrics_parse_and_count_the_traffic(bot: Running) -> None:
    def value(service: str, name: str, **labels: str) -> float:
        return bot.metric(service, name, **labels)

    before = {
        "accepted": value("ingress", "webhooks_received_total", outcome="accepted"),
        "forged": value("ingress", "webhooks_received_total", outcome="bad_signature"),
        "deliveries": value(
            "dedup",
            "events_processed_total",
            type="webhook.delivery",
            outcome="ok",
        ),
        "sent": value("outbound", "replies_sent_total", outcome="sent"),
        "latency": value("outbound", "reply_latency_seconds_count"),
        "delivered": value("dedup", "statuses_received_total", status="delivered"),
        "duplicates": value("dedup", "dedup_duplicates_total", kind="message"),
    }
    customer = new_customer()
    payloads = [text_message(f"count me {i}", customer=customer) for i in range(3)]
    for payload in payloads:
        assert bot.post(payload)[0] == 200
    assert bot.post(payloads[0])[0] == 200  # a redelivery
    assert bot.post(payloads[0], signature="sha256=" + "0" * 64)[0] == 401
    wait_for(lambda: len(bot.graph.texts_to(customer)) == 3, timeout=30)
    wamid = bot.graph.sent_to(customer)[0]["wamid"]
    assert bot.post(status_payload(wamid, "delivered", customer))[0] == 200
    wait_for(
        lambda: (
            value("dedup", "statuses_received_total", status="delivered") == before["delivered"] + 1
        ),
        timeout=20,
    )

    # Every service's exposition parses with Prometheus' own text parser.
    for service in SERVICES:
        assert list(text_string_to_metric_families(scrape(bot, service)))
    # Three messages, one redelivery, one status.
    assert value("ingress", "webhooks_received_total", outcome="accepted") == before["accepted"] + 5
    assert value("ingress", "webhooks_received_total", outcome="bad_signature") == (
        before["forged"] + 1
    )
    wait_for(
        lambda: (
            value(
                "dedup",
                "events_processed_total",
                type="webhook.delivery",
                outcome="ok",
            )
            == before["deliveries"] + 5
        ),
        timeout=20,
    )
    assert value("dedup", "dedup_duplicates_total", kind="message") == before["duplicates"] + 1
    assert value("outbound", "replies_sent_total", outcome="sent") == before["sent"] + 3
    assert value("outbound", "reply_latency_seconds_count") == before["latency"] + 3
    # Queue depth is polled by the consumers that own the queues.
    assert "queue_messages" in scrape(bot, "conversation")


def _promql_metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    keywords = {"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan"}
    names = set()
    for match in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name not in keywords:
            names.add(name)
    return names


def _deploy_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/whatsapp-bot.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (DEPLOY / "prometheus/alerts.yml").read_text()
    exprs += [line.split("expr:", 1)[1].strip() for line in rules.splitlines() if "expr:" in line]
    return exprs


def test_dashboard_and_alert_rules_only_use_metrics_the_services_export(bot: Running) -> None:
    exprs = _deploy_expressions()
    assert len(exprs) > 15
    used = set().union(*(_promql_metric_names(e) for e in exprs))
    assert "reply_latency_seconds_bucket" in used  # the parser finds names
    exported = exported_names(bot) | {"up"}  # `up` is Prometheus' own
    missing = sorted(used - exported)
    assert not missing, f"dashboard or alerts use metrics nobody exports: {missing}"


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_prometheus_config_and_rules_pass_promtool(promtool: str) -> None:
    config = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS" in rules.stdout


def test_a_real_prometheus_scrapes_every_target(bot: Running, promtool: str) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package ships both promtool and prometheus"
    workdir = Path(tempfile.mkdtemp(prefix="prom-"))
    rabbit_host = urlparse(bot.amqp_url).hostname or "127.0.0.1"
    rabbit_port = os.environ.get("RABBITMQ_PROMETHEUS_PORT", "15692")
    targets = [f"127.0.0.1:{bot.stack.settings.port_of(s)}" for s in SERVICES]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus/alerts.yml")],
        "scrape_configs": [
            {"job_name": "whatsapp-bot", "static_configs": [{"targets": targets}]},
            {
                "job_name": "rabbitmq",
                "static_configs": [{"targets": [f"{rabbit_host}:{rabbit_port}"]}],
            },
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is valid YAML
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "prometheus.log", "wb"),
    )
    try:

        def targets_state() -> dict[str, str]:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/targets", timeout=2
                ) as resp:
                    active = json.load(resp)["data"]["activeTargets"]
            except OSError:
                return {}
            return {t["scrapeUrl"]: t["health"] for t in active}

        wait_for(
            lambda: (
                len(targets_state()) == len(targets) + 1 and set(targets_state().values()) == {"up"}
            ),
            timeout=60,
        )
        state = targets_state()
        assert all(h == "up" for h in state.values()), state
        # The rules loaded and evaluate against real series.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as resp:
            groups = json.load(resp)["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 8 and all(r.get("health") == "ok" for r in rules), rules
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


# --- traces and logs: a stack of their own, with span export on and debug logs ----------------


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[Running, FakeOTLPCollector]]:
    infra = start_infra()  # its own vhost and database: no other stack competes for messages
    collector = FakeOTLPCollector().start()
    running = start_stack(
        infra.amqp_url,
        infra.database_url,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        LOG_LEVEL="DEBUG",
    )
    try:
        yield running, collector
    finally:
        running.close()
        collector.stop()
        infra.cleanup()


def test_one_webhook_is_one_trace_across_every_service(
    traced: tuple[Running, FakeOTLPCollector],
) -> None:
    bot, collector = traced
    customer = new_customer()
    assert bot.post(text_message("trace me", customer=customer))[0] == 200
    wait_for(lambda: bot.graph.texts_to(customer) == ["echo: trace me"], timeout=30)
    [received] = bot.sql(
        "SELECT metadata->>'traceparent' AS tp FROM events WHERE type = 'MessageReceived'"
        " AND stream_name = $1",
        "inbox-" + bot.conversation_id(PHONE_NUMBER_ID, customer),
    )
    trace_id = received["tp"].split("-")[1]
    services = {"ingress", "dedup", "conversation", "outbound"}
    wait_for(
        lambda: (
            services <= {s.service for s in collector.trace(trace_id)}
            and any(s.name == "whatsapp POST" for s in collector.trace(trace_id))
        ),
        timeout=30,
    )
    # Each service exports its spans in the order they end, batch after batch. The fence's
    # spans in a service end after all of the first message's there (same lanes, and ingress
    # answered the first POST before the fence was posted): once a span of the fence's trace
    # has arrived from every service, every span of the first trace has too.
    bot.fence(customer)
    *_, fence_received = bot.sql(
        "SELECT metadata->>'traceparent' AS tp FROM events WHERE type = 'MessageReceived'"
        " AND stream_name = $1 ORDER BY stream_version",
        "inbox-" + bot.conversation_id(PHONE_NUMBER_ID, customer),
    )
    fence_trace = fence_received["tp"].split("-")[1]
    assert fence_trace != trace_id
    wait_for(
        lambda: services <= {s.service for s in collector.trace(fence_trace)},
        timeout=30,
        message="a span of the fence's trace from every service",
    )
    spans = collector.trace(trace_id)
    by_id = {s.span_id: s for s in spans}

    roots = [s for s in spans if not s.parent_span_id]
    assert [(r.service, r.kind) for r in roots] == [("ingress", "server")]
    # Parent links are intact: every other span's parent is in the same trace.
    assert all(s.parent_span_id in by_id for s in spans if s.parent_span_id)
    # Across AMQP: each consumer span's parent is a producer span of the service before it.
    hops = {(by_id[s.parent_span_id].service, s.service) for s in spans if s.kind == "consumer"}
    assert {("ingress", "dedup"), ("dedup", "conversation"), ("conversation", "outbound")} <= hops
    assert all(by_id[s.parent_span_id].kind == "producer" for s in spans if s.kind == "consumer")
    names = {(s.service, s.name) for s in spans}
    assert ("dedup", "eventstore append") in names
    assert ("conversation", "openai POST") in names
    assert ("outbound", "whatsapp POST") in names
    # No personal data in span attributes.
    assert not any(customer in str(s.attributes) for s in spans)


def test_logs_of_a_full_conversation_hold_no_phone_number_and_no_text(
    traced: tuple[Running, FakeOTLPCollector],
) -> None:
    bot, _ = traced
    customer = new_customer()
    secret_texts = ["my card number is 4111 1111", "I live at Via Roma 12", "call Maria"]
    messages = [
        {
            "from": customer,
            "id": f"wamid.log{i}{customer}",
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": text},
        }
        for i, text in enumerate(secret_texts)
    ]
    messages.append(
        {
            "from": customer,
            "id": f"wamid.logloc{customer}",
            "timestamp": "1700000000",
            "type": "location",
            "location": {"latitude": 45.46, "longitude": 9.19, "name": "Casa di Maria"},
        }
    )
    assert bot.post(messages_payload(messages, customer=customer))[0] == 200
    wait_for(lambda: len(bot.graph.texts_to(customer)) == 4, timeout=30)
    # Each service logs a message's handling before it takes up that customer's next one, a
    # record at a time, flushed: once the fence is answered, every line about the four
    # messages before it is in the log files.
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer)[4:] == [fence]
    logs = "\n".join(p.read_text() for p in bot.run_dir.glob("*.log"))
    masked = customer[:3] + "*" * (len(customer) - 6) + customer[-3:]
    # The conversation was logged, by its id: the customer's key (a pseudonym) after the
    # number's id (masked as every long run of digits is) ...
    assert bot.customer_key(customer) in logs
    assert customer not in logs and masked not in logs  # ... never by the number
    for text in [*secret_texts, "Casa di Maria"]:
        assert text not in logs
    for line in logs.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            assert {"ts", "level", "service", "event"} <= record.keys()
