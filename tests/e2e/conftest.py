"""One running stack for the end-to-end session (starting it takes a few seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.services import SERVICES
from tests.e2e.harness import Running, start_stack


@pytest.fixture(scope="session")
def running(amqp_url: str, database_url: str) -> Iterator[Running]:
    stack = start_stack(amqp_url, database_url)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def bot(running: Running) -> Iterator[Running]:
    """The running stack, with the fakes' faults cleared after each test and every service
    brought back if a test killed one."""
    yield running
    running.graph.clear_faults()
    running.openai.clear_faults()
    running.graph.latency = 0.0
    running.openai.latency = 0.0
    if running.elevenlabs is not None:
        running.elevenlabs.clear_faults()
        running.elevenlabs.latency = 0.0
    for service in SERVICES:
        if running.stack.pid(service) is None:
            running.restart(service)
