"""RabbitMQ and PostgreSQL restart under load: the services reconnect by themselves (nobody
restarts them) and carry on; ingress never answers 200 for a delivery it could not store, and
every delivery it accepted is answered exactly once, in order.

These restart the machine's shared local servers, so they are short and always bring the
server back, even when the test fails. They run only against local servers (not containers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from shared.payloads import text_message
from shared.services import SERVICES
from tests.e2e.harness import Running, new_customer
from tests.e2e.test_crash import (
    CUSTOMERS,
    OUTCOME_TIMEOUT,
    Load,
    assert_answered_once_in_order,
    in_flight,
    is_send_to_any,
    replies,
)
from tests.support.fakes import Fault, wait_for

DOWN_FOR = 3.0  # seconds the server stays down
# Enough messages that the load is still running when the server goes down, even on a busy
# machine (25 x 0.3 s = 7.5 s of posting per customer).
RESTART_MESSAGES = 25
SEND_LATENCY = 0.8  # longer than stopping PostgreSQL takes


def _local(url: str, port: int) -> bool:
    parts = urlsplit(url)
    return parts.hostname in {"127.0.0.1", "localhost"} and (parts.port or port) == port


@pytest.fixture
def local_servers(bot: Running) -> Running:
    if not (
        shutil.which("rabbitmqctl")
        and shutil.which("pg_ctlcluster")
        and shutil.which("pg_isready")
        and _local(bot.amqp_url, 5672)
        and _local(bot.database_url, 5432)
    ):
        pytest.skip("restarting servers needs the local RabbitMQ and PostgreSQL")
    return bot


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _pg_version() -> str:
    [version] = os.listdir("/etc/postgresql")
    return version


def _pg_ctl(action: str) -> None:
    _run("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", action)


def _pg_online() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], timeout=10).returncode == 0


@pytest.fixture
def broker_restored(local_servers: Running) -> Iterator[Running]:
    try:
        yield local_servers
    finally:
        # Whatever happened, the shared broker is up again.
        _run("rabbitmqctl", "start_app")
        _run("rabbitmqctl", "await_startup")


@pytest.fixture
def database_restored(local_servers: Running) -> Iterator[Running]:
    try:
        yield local_servers
    finally:
        if not _pg_online():
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start"],
                capture_output=True,
                timeout=120,
                check=False,
            )
        wait_for(_pg_online, timeout=60, interval=0.5, message="PostgreSQL back")


def _pids(bot: Running) -> dict[str, int | None]:
    return {s: bot.stack.pid(s) for s in SERVICES}


def _assert_carried_on(bot: Running, pids: dict[str, int | None], load: Load) -> None:
    """Same processes as before (they reconnected, nobody restarted them), all ready again,
    and every accepted message answered once, in order."""
    assert _pids(bot) == pids, "a service process died instead of reconnecting"
    wait_for(
        lambda: all(bot.stack.ready(s)[0] for s in SERVICES),
        timeout=OUTCOME_TIMEOUT,
        interval=0.5,
        message="every service ready again",
    )
    load.assert_all_accepted()
    assert_answered_once_in_order(bot, load)


def test_rabbitmq_restart_under_load(broker_restored: Running) -> None:
    bot = broker_restored
    customers = [new_customer() for _ in range(CUSTOMERS)]
    pids = _pids(bot)
    # Slow upstreams keep handlers busy across the outage: they finish on a dead channel, so
    # their publishes and acks fail and the broker must redeliver what they had done.
    bot.openai.latency = 0.3
    bot.graph.latency = 0.1
    load = Load(bot, customers, RESTART_MESSAGES, gap=0.3).start()
    wait_for(lambda: replies(bot, customers) >= 1, timeout=OUTCOME_TIMEOUT, message="replies")

    _run("rabbitmqctl", "stop_app")
    stopped = time.monotonic()
    # Down: ingress cannot store a delivery, so it must not say 200 (Meta retries a 503).
    status, _ = bot.post(text_message("while the broker is down", customer=new_customer()))
    assert status == 503
    time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - stopped)))
    _run("rabbitmqctl", "start_app")
    _run("rabbitmqctl", "await_startup")

    load.join()
    assert load.refusals["503"] > 0, f"the load never met the broker down: {load.refusals}"
    _assert_carried_on(bot, pids, load)


def test_postgresql_restart_under_load(database_restored: Running) -> None:
    bot = database_restored
    customers = [new_customer() for _ in range(CUSTOMERS)]
    pids = _pids(bot)
    # Slow upstreams keep handlers between their reads and their writes across the outage;
    # in particular a Graph API send is in flight when the database goes: Meta accepts it while
    # the database is down, and it must still be sent only once.
    bot.openai.latency = 0.2
    sends = is_send_to_any(customers)
    bot.graph.fail_always(Fault(status=None, delay=SEND_LATENCY, match=sends))  # slow sends
    load = Load(bot, customers, RESTART_MESSAGES, gap=0.3).start()
    wait_for(
        lambda: replies(bot, customers) >= 2 and in_flight(bot.graph, sends, 0.1),
        timeout=OUTCOME_TIMEOUT,
        interval=0.01,
        message="replies, and a send in flight",
    )

    _pg_ctl("stop")
    assert not _pg_online()
    time.sleep(DOWN_FOR)
    _pg_ctl("start")

    load.join()
    # Ingress has no database on the request path: Meta never noticed the restart.
    assert not load.refusals, f"posts refused during a database restart: {load.refusals}"
    _assert_carried_on(bot, pids, load)
