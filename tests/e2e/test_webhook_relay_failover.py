"""One active relay at a time, and a relay that outlives its database connections."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from services.webhook_relay.client import AdminClient, AdminError
from shared.payloads import text_message
from shared.stack import ROOT
from tests.e2e.harness import ADMIN_TOKEN, Running, free_port, new_customer
from tests.e2e.test_webhook_relay import OUTCOME_TIMEOUT, cid_of, serve_crm
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import wait_for


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


@pytest.fixture
def crm(bot: Running) -> Iterator[FakeCRM]:
    yield from serve_crm(bot)


def test_a_second_relay_is_a_standby_and_takes_over_when_the_first_dies(
    bot: Running, crm: FakeCRM
) -> None:
    port = free_port()
    log = open(bot.run_dir / "webhook_relay.standby.log", "ab")
    standby = subprocess.Popen(
        [sys.executable, "-m", "services.webhook_relay"],
        cwd=ROOT,
        env={**bot.stack.env, "WEBHOOK_RELAY_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: "standby" in readyz(port)[1], timeout=30, message="standby")
        assert readyz(port)[0] == 503
        with pytest.raises(AdminError) as err:
            AdminClient(f"http://127.0.0.1:{port}", ADMIN_TOKEN).endpoints()
        assert err.value.status == 503
        bot.relay_admin.create_endpoint(crm.endpoint_url, ["message.received"])

        bot.stack.kill("webhook_relay")
        wait_for(lambda: readyz(port)[0] == 200, timeout=30, message="the standby took over")
        customer = new_customer()
        bot.post(text_message("after the take-over", customer=customer))
        wait_for(lambda: len(crm.events(cid_of(bot, customer))) == 1, timeout=OUTCOME_TIMEOUT)
    finally:
        standby.terminate()
        standby.wait(timeout=30)
        log.close()
        bot.restart("webhook_relay")


def test_the_relay_carries_on_after_losing_its_database_connections(
    bot: Running, crm: FakeCRM
) -> None:
    bot.relay_admin.create_endpoint(crm.endpoint_url, ["message.received"])
    pid = bot.stack.pid("webhook_relay")
    log = bot.stack.log_file("webhook_relay")

    def took_over() -> int:
        return log.read_text().count('"event":"active relay"')

    before = took_over()
    killed = bot.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'webhook_relay' AND datname = current_database()"
    )
    assert len(killed) >= 2  # the lock's connection and the pool's
    # It noticed the lost lock, stopped its work, and took the lock again.
    wait_for(lambda: took_over() > before, timeout=30, message="active again")
    customer = new_customer()
    bot.post(text_message("after the connections were cut", customer=customer))
    wait_for(lambda: len(crm.events(cid_of(bot, customer))) == 1, timeout=OUTCOME_TIMEOUT)
    assert bot.stack.pid("webhook_relay") == pid  # the same process, it reconnected
    port = bot.stack.settings.port_of("webhook_relay")
    wait_for(lambda: readyz(port)[0] == 200, timeout=30)
