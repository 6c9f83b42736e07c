"""The relay in-process (subscription + dispatcher + admin functions) against a real
PostgreSQL database of its own and CRMs that are real HTTP servers on loopback.

Its own database, because the end-to-end stack's relay process (same session database)
would otherwise pick up these tests' endpoints too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from services.webhook_relay import service
from services.webhook_relay.dispatcher import Dispatcher
from services.webhook_relay.fanout import FanOut
from services.webhook_relay.owner import Directory
from services.webhook_relay.schedule import Policy, parse_schedule
from services.webhook_relay.sender import Sender, make_session
from services.webhook_relay.service import Deps
from services.webhook_relay.ssrf import UrlPolicy
from services.webhook_relay.store import SUBSCRIPTION, RelayStore
from shared.eventstore import NewEvent, Unrecognised
from shared.eventstore.migrate import migrate
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.eventstore.subscription import Subscription
from tests.support.crm_fakes import FakeCRM
from tests.support.infra import _run

LOOPBACK = UrlPolicy.from_settings(True, "127.0.0.0/8,::1/128")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def relay_database_url(database_url: str) -> Iterator[str]:
    name = f"relay_{uuid.uuid4().hex[:12]}"
    admin = _with_db(database_url, "postgres")

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(create())
    url = _with_db(database_url, name)
    _run(migrate(url))
    try:
        yield url
    finally:
        _run(drop())


@dataclass
class InProcessRelay:
    deps: Deps
    relay: RelayStore
    events: PostgresEventStore
    dispatcher: Dispatcher

    async def append(self, stream: str, type_: str, data: dict[str, Any]) -> None:
        # A raw row, as a writer of that type records it; read back typed.
        await self.events.append(stream, [NewEvent(Unrecognised(type=type_, data=data))])

    async def conversation(self, cid: str, count: int) -> None:
        """`count` replies in one conversation: conversation.reply events, seq 0..count-1."""
        for seq in range(count):
            await self.append(
                f"conversation-{cid}",
                "BotReplied",
                {"seq": seq, "text": f"r{seq}", "in_reply_to": "", "command_id": f"{cid}-{seq}"},
            )

    async def register(self, crm: FakeCRM, **kwargs: Any) -> str:
        endpoint, _ = await service.create_endpoint(self.deps, crm.endpoint_url, **kwargs)
        return endpoint.endpoint_id


@contextlib.asynccontextmanager
async def running_relay(
    database_url: str,
    policy: UrlPolicy = LOOPBACK,
    dns: AbstractResolver | None = None,
    schedule: str = "100ms,200ms,300ms",
    http_timeout: float = 30.0,
    max_in_flight: int = 4,
    breaker_fail_max: int = 50,
    breaker_reset: float = 1.0,
    directory: Directory | None = None,
) -> AsyncIterator[InProcessRelay]:
    """`directory`: whose numbers are whose (None: every event is the default business's)."""
    pool = await create_pool(database_url, min_size=1, max_size=4)
    relay = RelayStore(pool)
    events = PostgresEventStore(pool)
    session = make_session(policy, dns)
    base = Deps(
        relay,
        events,
        policy,
        dns or ThreadedResolver(),
        timedelta(hours=1),
        directory=directory,
    )
    holder: dict[str, Deps] = {}

    async def on_gone(endpoint_id: str, reason: str) -> None:
        await service.disable_gone(holder["deps"], endpoint_id, reason)

    dispatcher = Dispatcher(
        relay,
        Sender(session, policy, http_timeout),
        Policy(parse_schedule(schedule), jitter=0.1),
        max_in_flight=max_in_flight,
        breaker_fail_max=breaker_fail_max,
        breaker_reset_seconds=breaker_reset,
        on_gone=on_gone,
        reconcile_seconds=5.0,
    )
    deps = holder["deps"] = replace(base, dispatcher=dispatcher)
    subscription = Subscription(
        SUBSCRIPTION,
        FanOut(relay, dispatcher.enqueued, directory=directory),
        pool,
        poll_interval=0.05,
        mapper=events.mapper,
    )
    dispatching = asyncio.create_task(dispatcher.run())
    await dispatcher.loaded.wait()
    following = asyncio.create_task(subscription.follow())
    try:
        yield InProcessRelay(deps, relay, events, dispatcher)
    finally:
        for task in (following, dispatching):
            task.cancel()
        await dispatcher.stop(0.5)
        for endpoint in await relay.list_endpoints():
            await service.delete_endpoint(deps, endpoint.endpoint_id)
        await session.close()
        await pool.close()


@pytest_asyncio.fixture
async def crm() -> AsyncIterator[FakeCRM]:
    server = FakeCRM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def crm2() -> AsyncIterator[FakeCRM]:
    server = FakeCRM().start()
    try:
        yield server
    finally:
        server.stop()


async def until(pred: Any, within: float = 20.0, message: str = "") -> None:
    """Async wait_for: the relay runs in this event loop, so tests must not block it."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for: {message or pred}")
        await asyncio.sleep(0.05)
