"""The services in Docker containers, started by docker-compose from docker-compose.yml and
the image deploy/Dockerfile builds, on the host's network against this machine's RabbitMQ and
PostgreSQL (a vhost and a database of the test's own): a signed webhook is answered at a fake
Graph API on loopback, and a SIGKILL of conversation's process mid-load, twice, loses nothing
and doubles nothing (`make test-compose`; docs/docker.md)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.payloads import text_message
from tests.compose.engine import IMAGE, ROOT, ComposeStack, build_image, docker, ensure_base
from tests.e2e.harness import Running, new_customer, start_stack
from tests.e2e.test_crash import (
    JUST_STARTED,
    OUTCOME_TIMEOUT,
    SLOW,
    Load,
    assert_answered_once_in_order,
    in_flight,
    is_completion,
    replies,
)
from tests.support.fakes import wait_for

# A cold run makes the base and builds the image (about 2.5 minutes here) inside the first
# test's fixtures, beyond the suite's 180 s per test.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def image() -> None:
    started = time.monotonic()
    ensure_base()
    build_image()
    print(f"\n[compose] base and image ready in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def bot(image: None, amqp_url: str, database_url: str) -> Iterator[Running]:
    started = time.monotonic()
    running = start_stack(amqp_url, database_url, stack_factory=ComposeStack)
    print(f"[compose] containers ready in {time.monotonic() - started:.1f} s")
    try:
        yield running
    finally:
        running.close()


def test_a_signed_webhook_is_answered_by_the_containers(bot: Running) -> None:
    assert isinstance(bot.stack, ComposeStack)
    customer = new_customer()
    assert bot.post(text_message("hello", customer=customer))[0] == 200
    wait_for(lambda: "echo: hello" in bot.graph.texts_to(customer), timeout=OUTCOME_TIMEOUT)
    assert bot.post(text_message("forged", customer=customer), signed=False)[0] in (401, 403)
    # Every service runs from the one image, as the Dockerfile's non-root user.
    for service in ("ingress", "conversation", "api"):
        config = docker(
            "inspect", "-f", "{{.Config.Image}} {{.Config.User}}", bot.stack.container(service)
        )
        assert config.split() == [IMAGE, "nobody"], f"{service}: {config}"


def test_sigkill_of_a_containers_process_loses_nothing_and_doubles_nothing(bot: Running) -> None:
    stack = bot.stack
    assert isinstance(stack, ComposeStack)
    customers = [new_customer() for _ in range(4)]
    bot.openai.latency = SLOW  # the kill lands while conversation waits for the LLM
    # About 12 s of posting: still going when the restarted container is killed again.
    load = Load(bot, customers, 20, gap=0.6).start()
    for _ in range(2):  # the container the engine restarted must survive a crash too
        wanted = replies(bot, customers) + 3
        wait_for(
            lambda n=wanted: replies(bot, customers) >= n,
            timeout=OUTCOME_TIMEOUT,
            message="replies before the kill",
        )
        wait_for(
            lambda: in_flight(bot.openai, is_completion, JUST_STARTED),
            timeout=OUTCOME_TIMEOUT,
            interval=0.01,
            message="an LLM call in flight",
        )
        killed, restarts = stack.pid("conversation"), stack.restart_count("conversation")
        stack.kill("conversation")
        bot.restart("conversation")  # the restart policy brings it back; wait until ready
        assert stack.pid("conversation") != killed
        assert stack.restart_count("conversation") == restarts + 1
    load.join()
    load.assert_all_accepted()
    assert_answered_once_in_order(bot, load)
    bot.openai.latency = 0.0


def test_docker_compose_v1_accepts_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.touch()
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env={**os.environ, "ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
