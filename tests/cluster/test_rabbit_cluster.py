"""The whole stack on a three-node RabbitMQ cluster (tests/support/rabbit_cluster.py), with
AMQP_URL naming the three nodes: quorum queues replicated on all three, and a message run
during which the node every service is connected to is SIGKILLed, then, once it is back,
the node they moved to. Counted as in tests/e2e/test_crash.py: every accepted message
answered, in order, once (a repeat only for a counted interrupted send).

`make test-cluster` (CI runs it too); CLUSTER_MESSAGES per customer sets the run's length.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.broker.topology import DEAD_LETTERS, stages
from shared.config import load_settings
from tests.e2e.harness import Running, new_customer, start_stack
from tests.e2e.test_crash import Load, assert_answered_once_in_order, replies
from tests.support import rabbit_cluster
from tests.support.fakes import wait_for
from tests.support.rabbit_cluster import RabbitCluster

CUSTOMERS = 8
MESSAGES = int(os.environ.get("CLUSTER_MESSAGES", "60"))  # per customer
GROUP_SIZE = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    if not rabbit_cluster.available():
        pytest.skip("Debian's rabbitmq-server is not installed (deploy/setup-servers.sh)")
    started = RabbitCluster(Path(tmp_path_factory.mktemp("rabbit-cluster")), size=3)
    try:
        started.start()
        yield started
    finally:
        started.remove()


@pytest.fixture(scope="module")
def bot(cluster: RabbitCluster, database_url: str) -> Iterator[Running]:
    running = start_stack(
        cluster.amqp_url,
        database_url,
        QUORUM_GROUP_SIZE=str(GROUP_SIZE),
        # A node's restart leaves a consumer's messages unacked on the dead connection for a
        # moment; the redelivery must not be taken for a message that keeps crashing.
        DELIVERY_LIMIT="50",
    )
    try:
        yield running
    finally:
        running.stack.down()
        running.graph.stop()
        running.openai.stop()
        if running.elevenlabs is not None:
            running.elevenlabs.stop()


def quorum_members(cluster: RabbitCluster) -> dict[str, list[str]]:
    out = cluster.ctl(
        cluster.nodes[0], "list_queues", "-q", "name", "type", "members", "--formatter", "json"
    )
    return {q["name"]: q["members"] for q in json.loads(out) if q["type"] == "quorum"}


def test_every_quorum_queue_has_a_replica_on_each_node(
    bot: Running, cluster: RabbitCluster
) -> None:
    settings = load_settings(env=bot.env, env_file=bot.run_dir / "absent.env")
    expected = {q for st in stages(settings).values() for q in st.queues} | {DEAD_LETTERS}
    members = quorum_members(cluster)
    assert expected <= set(members), f"missing: {expected - set(members)}"
    every = sorted(n.nodename for n in cluster.nodes)
    for name in expected:
        assert sorted(members[name]) == every, f"{name} on {members[name]}"


def test_a_sigkilled_node_twice_loses_nothing_and_never_replies_twice(
    bot: Running, cluster: RabbitCluster
) -> None:
    customers = [new_customer() for _ in range(CUSTOMERS)]
    load = Load(bot, customers, MESSAGES, gap=0.5, duration=60 + MESSAGES * 1.5).start()
    total = CUSTOMERS * MESSAGES
    outages: list[float] = []  # from a kill to the next webhook ingress accepted
    # First the node every service starts on (AMQP_URL's first), then, as soon as the first
    # is back and a few more replies went out, the one they moved to.
    at = total // 6
    for victim in cluster.nodes[:2]:
        wait_for(
            lambda at=at: replies(bot, customers) >= at,
            timeout=180,
            message=f"{at} replies before killing {victim.name}",
        )
        assert not load.done, "the load ended before the kill: make it longer"
        load.just_accepted.clear()
        killed_at = time.monotonic()
        cluster.kill(victim)
        survivors = [n for n in cluster.nodes if n is not victim]
        running = cluster.running_nodes(survivors[0])
        assert victim.nodename not in running
        # Ingress accepts again while the node is still down: it moved to another.
        assert load.just_accepted.wait(60), f"no webhook accepted with {victim.name} down"
        outages.append(time.monotonic() - killed_at)
        assert victim.process is None
        cluster.restart(victim)
        wait_for(
            lambda: len(cluster.running_nodes(cluster.nodes[2])) == len(cluster.nodes),
            timeout=120,
            message=f"{victim.name} back in the cluster",
        )
        at = replies(bot, customers) + CUSTOMERS
    load.join(timeout=60 + MESSAGES * 2.0)
    load.assert_all_accepted()
    assert_answered_once_in_order(bot, load, interrupted_may_repeat=True)
    print(
        f"\ncluster run: {total} messages, {sum(len(v) for v in load.accepted.values())} "
        f"accepted, refusals {dict(load.refusals)}, "
        f"seconds from each kill to the next accepted webhook {[round(o, 1) for o in outages]}"
    )
