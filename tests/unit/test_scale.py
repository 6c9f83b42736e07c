"""Several instances of a service: their names, ports and shares of a stage's queues."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shared.broker.bus import instance_of, share_of
from shared.config import Settings, load_settings
from shared.services import instance_name, split_instance
from shared.stack import Stack


def test_instance_names_round_trip_and_a_bare_name_is_instance_one() -> None:
    assert instance_name("conversation", 1) == "conversation"
    assert instance_name("webhook_relay", 3) == "webhook_relay-3"
    assert split_instance("webhook_relay-3") == ("webhook_relay", 3)
    assert split_instance("conversation") == ("conversation", 1)
    with pytest.raises(KeyError):
        split_instance("nobody-2")


def test_scale_and_ports_come_from_the_environment(tmp_path: Path) -> None:
    s = load_settings(
        env={"SCALE_CONVERSATION": "3", "CONVERSATION_PORT": "9000", "INSTANCE_PORT_STEP": "10"},
        env_file=tmp_path / "absent.env",
    )
    assert s.instances_of("conversation") == ("conversation", "conversation-2", "conversation-3")
    assert s.instances_of("dedup") == ("dedup",)
    assert [s.port_of(i) for i in s.instances_of("conversation")] == [9000, 9010, 9020]
    assert s.url_of("conversation-2").endswith(":9010")


def test_the_stack_lists_every_instance_in_service_order(tmp_path: Path) -> None:
    s = replace(
        Settings(run_dir=str(tmp_path)), scale={"dedup": 2, "conversation": 1, "outbound": 2}
    )
    assert Stack(s).instances(("dedup", "conversation", "outbound")) == (
        "dedup",
        "dedup-2",
        "conversation",
        "outbound",
        "outbound-2",
    )


def test_shares_cover_every_queue_once_and_spread_it() -> None:
    queues = [f"q{i}" for i in range(4)]
    shares = [share_of(queues, k, 3) for k in (1, 2, 3)]
    owned = [q for own, _ in shares for q in own]
    assert sorted(owned) == queues  # each queue has exactly one first subscriber
    assert [len(own) for own, _ in shares] == [2, 1, 1]
    for own, standby in shares:
        assert sorted(own + standby) == queues  # and every instance stands by for the rest
    # One instance: everything is its own, nothing waits.
    assert share_of(queues, 1, 1) == (queues, [])


def test_an_instance_knows_its_number_from_its_name() -> None:
    s = replace(Settings(), scale={"conversation": 2}, extra={"SERVICE_INSTANCE": "conversation-2"})
    assert instance_of("conversation", s) == (2, 2)
    plain = replace(
        Settings(), scale={"conversation": 2}, extra={"SERVICE_INSTANCE": "conversation"}
    )
    assert instance_of("conversation", plain) == (1, 2)
