"""The stack on a PostgreSQL primary with a synchronous streaming replica of its own
(tests/support/pg_pair.py), DATABASE_URL naming both hosts with
target_session_attrs=read-write. The primary is SIGKILLed in the middle of a message run
and the replica promoted: every webhook ingress accepted is answered, in order, once (a
repeat only for a counted interrupted send). `make test-cluster`."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.eventstore.migrate import ensure_database, migrate
from tests.e2e.harness import Running, new_customer, start_stack
from tests.e2e.test_crash import Load, assert_answered_once_in_order, replies
from tests.support import pg_pair
from tests.support.fakes import wait_for
from tests.support.pg_pair import PgPair

CUSTOMERS = 8
MESSAGES = int(os.environ.get("FAILOVER_MESSAGES", "30"))  # per customer
DATABASE = "whatsapp_bot"


@pytest.fixture(scope="module")
def pair() -> Iterator[PgPair]:
    if not pg_pair.available():
        pytest.skip("Debian's PostgreSQL binaries are not installed (deploy/setup-servers.sh)")
    # Not under pytest's tmp dirs: those are root's alone, and the servers run as postgres.
    started = PgPair(Path(tempfile.mkdtemp(prefix="pg-pair-")))
    try:
        started.start()

        async def prepare() -> None:
            await ensure_database(started.primary_url(DATABASE))
            await migrate(started.primary_url(DATABASE))

        asyncio.run(prepare())
        yield started
    finally:
        started.remove()


@pytest.fixture(scope="module")
def bot(pair: PgPair, amqp_url: str) -> Iterator[Running]:
    running = start_stack(amqp_url, pair.url(DATABASE))
    try:
        yield running
    finally:
        running.stack.down()
        running.graph.stop()
        running.openai.stop()
        if running.elevenlabs is not None:
            running.elevenlabs.stop()


def test_a_killed_primary_and_a_promoted_replica_lose_no_acknowledged_webhook(
    bot: Running, pair: PgPair
) -> None:
    customers = [new_customer() for _ in range(CUSTOMERS)]
    load = Load(bot, customers, MESSAGES, gap=0.4, duration=60 + MESSAGES * 1.5).start()
    total = CUSTOMERS * MESSAGES
    wait_for(
        lambda: replies(bot, customers) >= total // 3,
        timeout=180,
        message=f"{total // 3} replies before killing the primary",
    )
    assert not load.done, "the load ended before the kill: make it longer"
    killed_at = time.monotonic()
    pair.kill_primary()
    time.sleep(1.0)  # no primary for a moment: the services wait, nothing is dropped
    pair.promote()
    before = replies(bot, customers)
    wait_for(
        lambda: replies(bot, customers) > before,
        timeout=120,
        message="a reply after the promotion",
    )
    recovered = time.monotonic() - killed_at
    load.join(timeout=60 + MESSAGES * 2.0)
    load.assert_all_accepted()
    assert_answered_once_in_order(bot, load, interrupted_may_repeat=True)
    print(
        f"\nfail-over run: {total} messages, all accepted, refusals {dict(load.refusals)}, "
        f"{recovered:.1f} s from the kill to the first reply after the promotion"
    )
