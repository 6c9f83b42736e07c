"""The admin API against PostgreSQL: hostile input on every route gets its documented 4xx.
PostgreSQL refuses NUL in text and jsonb, so a NUL that got past the API would be a 500 here
(it is not with the unit tests' fake store)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import pytest_asyncio
from aiohttp import web

from services.webhook_relay import service
from services.webhook_relay.admin import setup_admin
from services.webhook_relay.service import Deps
from services.webhook_relay.ssrf import UrlPolicy
from services.webhook_relay.store import RelayStore
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.web import Limits, serve
from tests.support.relay_admin import (
    AUTH,
    TOKEN,
    Probe,
    documented,
    hostile_probes,
    send,
)
from tests.unit.test_webhook_relay_admin import PublicDNS, relay_errors

UNKNOWN_DELIVERY = "msg_" + "f" * 32


@dataclass
class Served:
    port: int
    deps: Deps
    endpoint_id: str


@pytest_asyncio.fixture
async def served(relay_database_url: str) -> AsyncIterator[Served]:
    pool = await create_pool(relay_database_url, min_size=1, max_size=2)
    deps = Deps(
        RelayStore(pool),
        PostgresEventStore(pool),
        UrlPolicy(),
        PublicDNS(),  # names resolve to a public address; nothing is ever sent
        timedelta(hours=1),
    )
    endpoint, _ = await service.create_endpoint(deps, "https://crm.example.com/hook")
    app = web.Application(client_max_size=64 * 1024)
    setup_admin(app, lambda: deps, TOKEN)
    runner = await serve(app, "127.0.0.1", 0, Limits())  # behind the edge, as served
    try:
        yield Served(runner.addresses[0][1], deps, endpoint.endpoint_id)
    finally:
        await runner.cleanup()
        await service.delete_endpoint(deps, endpoint.endpoint_id)
        await pool.close()


async def test_hostile_input_never_reaches_postgres_or_the_catch_all(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    docs = documented()
    before = await served.deps.relay.get_endpoint(served.endpoint_id)
    failures = []
    for probe in hostile_probes(served.endpoint_id, UNKNOWN_DELIVERY):
        answer = await send(served.port, probe)
        if answer.status >= 500 or (answer.is_json and answer.status not in docs[probe.route]):
            failures.append((probe.route, probe.name, answer.status, answer.body[:200]))
    assert failures == []
    assert await served.deps.relay.get_endpoint(served.endpoint_id) == before
    assert not relay_errors(caplog)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "https://crm.example.com/a\u0000b"),
        ("description", "CRM\u0000"),
        ("url", "https://user:pass@crm.example.com/hook"),
    ],
)
async def test_refused_fields_leave_no_event_behind(served: Served, field: str, value: str) -> None:
    body = {"url": "https://crm.example.com/hook", field: value}
    json_type = (b"Content-Type", b"application/json")
    create = Probe("", ("/admin/endpoints", "post"), "post", "/admin/endpoints")
    create.headers, create.body = [AUTH, json_type], json.dumps(body).encode()
    answer = await send(served.port, create)
    assert answer.status == 422 and answer.json()["field"] == field
    patch = Probe("", ("/admin/endpoints/{id}", "patch"), "patch", "/admin/endpoints/x")
    patch.target = f"/admin/endpoints/{served.endpoint_id}"
    patch.headers, patch.body = [AUTH, json_type], json.dumps({field: value}).encode()
    answer = await send(served.port, patch)
    assert answer.status == 422 and answer.json()["field"] == field
    pool = served.deps.relay.pool
    # (jsonb cannot hold NUL at all: a NUL that got this far would have been a 500.)
    rows = await pool.fetch(
        "SELECT 1 FROM events WHERE stream_name LIKE 'endpoint-%' AND data::text LIKE $1",
        "%user:pass%",
    )
    assert rows == []
    endpoints = [e.endpoint_id for e in await served.deps.relay.list_endpoints()]
    assert endpoints == [served.endpoint_id]


async def test_a_refusal_names_its_field(served: Served) -> None:
    probe = Probe(
        "",
        ("/admin/endpoints/{id}/deliveries", "get"),
        "get",
        f"/admin/endpoints/{served.endpoint_id}/deliveries?limit=0",
    )
    answer = await send(served.port, probe)
    assert answer.status == 422
    assert answer.json() == {"error": "limit must be an integer from 1 to 500", "field": "limit"}
