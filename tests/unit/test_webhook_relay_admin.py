"""The admin API: refused without ADMIN_TOKEN, bearer checked; every hostile input a client
can send answered with its documented 4xx (never a 500); the shipped OpenAPI description
covers exactly the routes served, and every status it lists is one the route returns."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from ops.envfile import ensure_env_file
from services.webhook_relay import admin as admin_module
from services.webhook_relay import domain
from services.webhook_relay.admin import MAX_LIMIT, OPENAPI_PATH, setup_admin
from services.webhook_relay.domain import Endpoint
from services.webhook_relay.service import Deps
from services.webhook_relay.signing import generate_secret
from services.webhook_relay.ssrf import MAX_URL, UrlPolicy
from services.webhook_relay.store import Delivery, Head
from shared.config import load_settings, read_env_file
from shared.eventstore import START, NewEvent, Position, WrongExpectedVersion
from shared.eventstore.memory import InMemoryEventStore
from shared.web import Limits, serve
from tests.support.relay_admin import (
    AUTH,
    BODY_ROUTES,
    METHODS,
    TOKEN,
    Probe,
    documented,
    fill,
    hostile_probes,
    send,
)


@pytest_asyncio.fixture
async def serve_admin() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(token: str) -> tuple[web.Application, str]:
        app = web.Application()
        setup_admin(app, lambda: None, token)  # deps None: as a standby would
        runner = await serve(app, "127.0.0.1", 0, Limits())  # behind the edge, as served
        runners.append(runner)
        return app, f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_without_admin_token_the_admin_api_is_refused(serve_admin) -> None:  # type: ignore[no-untyped-def]
    _, base = await serve_admin("")
    async with aiohttp.ClientSession() as http:
        for token in ("", "anything"):
            async with http.get(
                base + "/admin/endpoints", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert resp.status == 503
                assert "ADMIN_TOKEN" in (await resp.json())["error"]


async def test_the_bearer_token_is_checked(serve_admin) -> None:  # type: ignore[no-untyped-def]
    _, base = await serve_admin("s3cret")
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"}):
            async with http.get(base + "/admin/endpoints", headers=headers) as resp:
                assert resp.status == 401
        async with http.get(
            base + "/admin/endpoints", headers={"Authorization": "Bearer s3cret"}
        ) as resp:
            assert resp.status == 503  # authorised; this instance is a standby


async def test_the_openapi_file_describes_every_route_and_nothing_else(serve_admin) -> None:  # type: ignore[no-untyped-def]
    app, base = await serve_admin("t")
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/admin") and route.method != "HEAD":
            served.add((re.sub(r"\{(\w+)\}", r"{\1}", path), route.method.lower()))
    spec = json.loads(OPENAPI_PATH.read_text())
    described = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "delete", "put"}
    }
    assert described == served
    async with aiohttp.ClientSession() as http, http.get(base + "/admin/openapi.json") as resp:
        assert resp.status == 200 and (await resp.json()) == spec


def test_first_up_also_generates_the_relay_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    env = tmp_path / ".env"
    assert "ADMIN_TOKEN" in ensure_env_file(env)
    token = read_env_file(env)["ADMIN_TOKEN"]
    assert len(token) >= 32
    assert load_settings(env={}, env_file=env).admin_token == token


# --- with an active relay: hostile input, and the OpenAPI document against the code ----------


def relay_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The relay's own error logs (the admin API's catch-all among them). aiohttp's are left
    out: it logs a corrupt compressed body again when it drains it after our 4xx is sent."""
    return [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("webhook")
    ]


class FakeRelay:
    """The store's surface the admin API uses, in memory. `fail` makes every call raise it;
    `conflict` makes every save lose the optimistic-concurrency race."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.fail: BaseException | None = None
        self.conflict = False

    def _call(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        self._call()
        found = self.endpoints.get(endpoint_id)
        return found if found is not None and not found.deleted else None

    async def list_endpoints(
        self, enabled_only: bool = False, business_id: str | None = None
    ) -> list[Endpoint]:
        self._call()
        return [
            e
            for e in self.endpoints.values()
            if not e.deleted and business_id in (None, e.business_id)
        ]

    async def save_endpoint(
        self, endpoint: Endpoint, events: list[NewEvent], expected_version: int
    ) -> Endpoint:
        self._call()
        if self.conflict:
            raise WrongExpectedVersion("someone else first")
        if not events:  # as the real store: nothing to write, nothing to race
            return endpoint
        saved = replace(endpoint, version=endpoint.version + len(events))
        self.endpoints[endpoint.endpoint_id] = saved
        return saved

    async def record_events(self, endpoint_id: str, events: list[NewEvent]) -> None:
        self._call()

    async def counts(self, endpoint_id: str) -> dict[str, int]:
        self._call()
        return {"pending": 1}

    def _of(self, delivery: Delivery, business_id: str | None) -> bool:
        endpoint = self.endpoints.get(delivery.endpoint_id)
        return business_id is None or (endpoint is not None and endpoint.business_id == business_id)

    async def list_deliveries(
        self,
        endpoint_id: str | None,
        state: str | None,
        limit: int,
        before: object = None,
        business_id: str | None = None,
        before_id: str | None = None,
    ) -> list[Delivery]:
        self._call()
        assert 1 <= limit <= MAX_LIMIT
        return [
            d
            for d in self.deliveries.values()
            if endpoint_id in (None, d.endpoint_id) and self._of(d, business_id)
        ]

    async def delivery(self, delivery_id: str, business_id: str | None = None) -> Delivery | None:
        self._call()
        found = self.deliveries.get(delivery_id)
        return found if found is not None and self._of(found, business_id) else None

    async def replay_delivery(self, delivery_id: str, now: datetime) -> Head | None:
        self._call()
        d = self.deliveries.get(delivery_id)
        return Head(d.delivery_id, d.endpoint_id, d.order_key, now, (1, 1)) if d else None

    async def replay_dead(self, endpoint_id: str, now: datetime) -> int:
        self._call()
        return 0

    async def position_at(self, since: datetime) -> Position | None:
        self._call()
        return None

    async def checkpoint(self) -> Position:
        self._call()
        return START


class PublicDNS(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="93.184.216.34",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        pass


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENDPOINT_ID = "ep_" + "0" * 23 + "1"
DELIVERY_ID = "msg_" + "0" * 31 + "1"
UNKNOWN_ENDPOINT = "ep_" + "f" * 24
UNKNOWN_DELIVERY = "msg_" + "f" * 32


@dataclass
class ActiveAdmin:
    port: int
    relay: FakeRelay
    holder: dict[str, Deps | None]

    def seed(self) -> None:
        endpoint, _ = domain.create(
            ENDPOINT_ID, "https://crm.example.com/hook", "", (), generate_secret(), NOW
        )
        self.relay.endpoints = {ENDPOINT_ID: replace(endpoint, version=0)}
        self.relay.deliveries = {
            DELIVERY_ID: Delivery(
                DELIVERY_ID,
                ENDPOINT_ID,
                uuid.uuid4(),
                "conversation.reply",
                "c",
                "{}",
                "dead",
                1,
                1,
                NOW,
                NOW,
                NOW,
                500,
                "HTTP 500",
                0,
                NOW,
                NOW,
                NOW,
            )
        }


@pytest_asyncio.fixture
async def active_admin() -> AsyncIterator[ActiveAdmin]:
    relay = FakeRelay()
    deps = Deps(
        relay=relay,  # type: ignore[arg-type]
        events=InMemoryEventStore(),
        policy=UrlPolicy(),
        resolver=PublicDNS(),
        secret_grace=timedelta(hours=1),
        now=lambda: NOW,
    )
    holder: dict[str, Deps | None] = {"deps": deps}
    app = web.Application(client_max_size=64 * 1024)  # as the relay's own app
    setup_admin(app, lambda: holder["deps"], TOKEN)
    runner = await serve(app, "127.0.0.1", 0, Limits())  # behind the edge, as served
    admin = ActiveAdmin(runner.addresses[0][1], relay, holder)
    admin.seed()
    yield admin
    await runner.cleanup()


async def test_probes_of_the_findings_get_their_4xx_with_the_field_and_the_reason(
    active_admin: ActiveAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    port = active_admin.port
    create = ("/admin/endpoints", "post")
    json_type = (b"Content-Type", b"application/json")
    cases = [
        (
            Probe("", create, "post", "/admin/endpoints", [(b"Authorization", b"Bearer \xff")]),
            401,
            "Authorization",
            "wrong bearer token",  # undecodable bytes are text that matches no token
        ),
        (
            Probe(
                "",
                create,
                "post",
                "/admin/endpoints",
                [AUTH, json_type],
                b'{"url": ' + b"[" * 10000 + b"]" * 10000 + b"}",
            ),
            422,
            "body",
            "deeper",
        ),
        (
            Probe(
                "",
                create,
                "post",
                "/admin/endpoints",
                [AUTH, json_type],
                json.dumps({"url": "https://crm.example.com/a\u0000b"}).encode(),
            ),
            422,
            "url",
            "printable ASCII",
        ),
        (
            Probe(
                "",
                create,
                "post",
                "/admin/endpoints",
                [AUTH, json_type],
                json.dumps({"url": "https://crm.example.com/", "description": "a\u0000"}).encode(),
            ),
            422,
            "description",
            "control characters",
        ),
        (
            Probe(
                "",
                create,
                "post",
                "/admin/endpoints",
                [AUTH, json_type],
                json.dumps({"url": "https://user:pass@crm.example.com/hook"}).encode(),
            ),
            422,
            "url",
            "credentials",
        ),
        (
            Probe("", ("/admin/deliveries", "get"), "get", "/admin/deliveries?limit=0"),
            422,
            "limit",
            "1 to 500",
        ),
        (
            Probe("", ("/admin/deliveries", "get"), "get", "/admin/deliveries?limit=501"),
            422,
            "limit",
            "1 to 500",
        ),
    ]
    for probe, status, field, reason in cases:
        answer = await send(port, probe)
        assert answer.status == status, (probe, answer)
        assert answer.json()["field"] == field, answer.json()
        assert reason in answer.json()["error"], answer.json()
    assert active_admin.relay.endpoints.keys() == {ENDPOINT_ID}  # nothing was registered
    assert not relay_errors(caplog)


async def test_nothing_a_client_sends_reaches_the_catch_all(
    active_admin: ActiveAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    """Every hostile probe on every route: a 4xx the document lists for that route, as JSON
    naming the reason. The seeded endpoint and delivery exist, so the body and query checks
    are reached; and none of the probes changes anything."""
    docs = documented()
    before = dict(active_admin.relay.endpoints)
    failures = []
    for probe in hostile_probes(ENDPOINT_ID, DELIVERY_ID):
        answer = await send(active_admin.port, probe)
        if answer.status >= 500 or (answer.is_json and answer.status not in docs[probe.route]):
            failures.append((probe.route, probe.name, answer.status, answer.body[:200]))
        elif answer.is_json and not 400 <= answer.status < 500:
            failures.append((probe.route, probe.name, answer.status, "not refused"))
    assert failures == []
    assert active_admin.relay.endpoints == before
    assert not relay_errors(caplog)


async def test_every_status_the_document_lists_is_one_the_route_returns(
    active_admin: ActiveAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For each route and each documented status, the request that should get it does."""
    docs = documented()
    port = active_admin.port
    json_type = (b"Content-Type", b"application/json")

    def request(
        route: tuple[str, str],
        endpoint: str = ENDPOINT_ID,
        delivery: str = DELIVERY_ID,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        query: str = "",
    ) -> Probe:
        template, method = route
        if body is None and route in BODY_ROUTES:
            body = json.dumps(BODY_ROUTES[route]).encode()
        return Probe(
            "",
            route,
            method,
            fill(template, endpoint, delivery) + query,
            [AUTH, json_type] if headers is None else headers,
            body,
        )

    async def provoke(route: tuple[str, str], status: int) -> int:
        active_admin.seed()
        relay, holder = active_admin.relay, active_admin.holder
        deps = holder["deps"]
        probe = request(route)
        try:
            if status == 401:
                probe.headers = [json_type]
            elif status == 503:
                holder["deps"] = None  # a standby
            elif status == 404:
                probe = request(route, UNKNOWN_ENDPOINT, UNKNOWN_DELIVERY)
            elif status == 409:
                relay.conflict = True
                if route[0].endswith("/enable"):  # only enabling a disabled one writes
                    old = relay.endpoints[ENDPOINT_ID]
                    relay.endpoints[ENDPOINT_ID] = replace(old, enabled=False)
            elif status == 413:
                probe.body = json.dumps({"description": "a" * 70_000}).encode()
            elif status == 422:
                if route in BODY_ROUTES:
                    probe.body = b"{"
                else:  # every route checks the business scope's form
                    probe.headers = [AUTH, json_type, (b"X-Business-Id", b"not an id!")]
            elif status == 500:
                relay.fail = RuntimeError("a bug")
                monkeypatch.setattr(admin_module, "catalogue", None)  # event-types' dependency
            return (await send(port, probe)).status
        finally:
            holder["deps"] = deps
            relay.fail, relay.conflict = None, False
            monkeypatch.undo()

    wrong = []
    for route, statuses in sorted(docs.items()):
        for status in sorted(statuses):
            got = await provoke(route, status)
            if got != status:
                wrong.append((route, status, got))
    assert wrong == []


def test_every_admin_error_is_documented_with_the_error_schema() -> None:
    spec = json.loads(OPENAPI_PATH.read_text())
    responses = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or path == "/admin/openapi.json":
                continue
            for code in ("401", "500", "503"):
                assert code in operation["responses"], (path, method, code)
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    ref = response["$ref"].rsplit("/", 1)[1]
                    schema = responses[ref]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}
    error = spec["components"]["schemas"]["Error"]["properties"]
    assert set(error) == {"error", "field"}
    url = spec["components"]["schemas"]["EndpointInput"]["properties"]["url"]
    assert url["maxLength"] == MAX_URL
    for name in ("limit",):
        for item in spec["paths"].values():
            for operation in item.values():
                for param in operation.get("parameters", []) if isinstance(operation, dict) else []:
                    if param["name"] == name:
                        assert param["schema"]["maximum"] == MAX_LIMIT


async def test_a_body_full_of_escaped_quotes_is_refused_at_once(
    active_admin: ActiveAdmin,
) -> None:
    """The depth check must be linear: a backtracking scan of strings took seconds of CPU
    per request on 60 KB of `\\"` (every other request waited meanwhile)."""
    create = ("/admin/endpoints", "post")
    json_type = (b"Content-Type", b"application/json")
    for body in (b'"' + b'\\"' * 30_000, b'{"url": "x' + b'\\"' * 30_000 + b"\\"):
        start = time.monotonic()
        answer = await send(
            active_admin.port,
            Probe("", create, "post", "/admin/endpoints", [AUTH, json_type], body),
        )
        assert answer.status == 422, answer
        assert time.monotonic() - start < 1.0


async def test_a_business_scope_sees_and_touches_only_its_own(active_admin: ActiveAdmin) -> None:
    """The seeded endpoint is the default business's: scoped to another business, every route
    that names it or its delivery answers 404, and listings leave it out; scoped to its own,
    or not scoped (the platform), they find it. What the other business creates is its own."""
    port = active_admin.port
    json_type = (b"Content-Type", b"application/json")

    def scoped(business: bytes | None) -> list[tuple[bytes, bytes]]:
        return [AUTH, json_type] + ([(b"X-Business-Id", business)] if business else [])

    async def call(method: str, path: str, business: bytes | None, body: object = None) -> object:
        raw = json.dumps(body).encode() if body is not None else None
        answer = await send(port, Probe("", ("", method), method, path, scoped(business), raw))
        return answer.status, (json.loads(answer.body) if answer.body else None)

    named = [
        ("get", f"/admin/endpoints/{ENDPOINT_ID}", None),
        ("patch", f"/admin/endpoints/{ENDPOINT_ID}", {"description": "x"}),
        ("post", f"/admin/endpoints/{ENDPOINT_ID}/rotate-secret", {}),
        ("get", f"/admin/endpoints/{ENDPOINT_ID}/secret", None),
        ("post", f"/admin/endpoints/{ENDPOINT_ID}/disable", {}),
        ("post", f"/admin/endpoints/{ENDPOINT_ID}/enable", None),
        ("get", f"/admin/endpoints/{ENDPOINT_ID}/deliveries", None),
        ("post", f"/admin/endpoints/{ENDPOINT_ID}/replay-dead", None),
        ("post", f"/admin/endpoints/{ENDPOINT_ID}/replay-since", {"since": NOW.isoformat()}),
        ("get", f"/admin/deliveries/{DELIVERY_ID}", None),
        ("post", f"/admin/deliveries/{DELIVERY_ID}/replay", None),
        ("delete", f"/admin/endpoints/{ENDPOINT_ID}", None),
    ]
    for method, path, body in named:
        status, answer = await call(method, path, b"biz_other", body)
        assert status == 404, (method, path, answer)
    for path in ("/admin/endpoints", "/admin/deliveries", "/admin/dead-letters"):
        status, answer = await call("get", path, b"biz_other")
        assert status == 200 and list(answer.values()) == [[]], (path, answer)  # type: ignore[union-attr]
    assert active_admin.relay.endpoints[ENDPOINT_ID].description == ""  # nothing changed
    for business in (b"default", None):
        status, answer = await call("get", "/admin/dead-letters", business)
        assert [d["id"] for d in answer["deliveries"]] == [DELIVERY_ID]  # type: ignore[index]
        status, answer = await call("get", f"/admin/endpoints/{ENDPOINT_ID}", business)
        assert status == 200 and answer["business_id"] == "default"  # type: ignore[index]

    status, created = await call(
        "post", "/admin/endpoints", b"biz_other", {"url": "https://crm.example.com/b"}
    )
    assert status == 201 and created["business_id"] == "biz_other"  # type: ignore[index]
    status, answer = await call("get", "/admin/endpoints", b"biz_other")
    assert [e["id"] for e in answer["endpoints"]] == [created["id"]]  # type: ignore[index]
    status, answer = await call("get", f"/admin/endpoints/{created['id']}", b"default")  # type: ignore[index]
    assert status == 404
