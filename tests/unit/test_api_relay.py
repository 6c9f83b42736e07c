"""The api's client of the relay's admin API: every request carries the platform token and
the caller's business, never none; the relay's refusals become the api's (404 in the same
words whatever the relay said, 409, 422 naming the field), and a relay that is away, a
standby, refuses the token or fails is a 503, never a 500. Against a real HTTP server."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from services.api.errors import ApiError
from services.api.relay import RelayClient


class FakeRelay:
    """Answers the next request with `status` and `body`; records what it was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.body: object = {"ok": True}
        self.seen: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "path": request.path_qs,
                "auth": request.headers.get("Authorization", ""),
                "business": request.headers.get("X-Business-Id", ""),
            }
        )
        return web.json_response(self.body, status=self.status)


@pytest_asyncio.fixture
async def relay() -> AsyncIterator[tuple[FakeRelay, RelayClient]]:
    fake = FakeRelay()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = RelayClient(f"http://127.0.0.1:{port}", "platform-token")
    yield fake, client
    await client.close()
    await runner.cleanup()


async def test_every_request_is_scoped_to_the_callers_business(
    relay: tuple[FakeRelay, RelayClient],
) -> None:
    fake, client = relay
    status, raw = await client.call("biz_a", "GET", "/endpoints", query={"limit": "3"})
    assert status == 200 and json.loads(raw) == {"ok": True}
    assert fake.seen == [
        {"path": "/admin/endpoints?limit=3", "auth": "Bearer platform-token", "business": "biz_a"}
    ]
    with pytest.raises(ApiError) as refused:
        await client.call("", "GET", "/endpoints", what="webhook endpoint")
    assert refused.value.status == 404 and len(fake.seen) == 1  # never sent unscoped


@pytest.mark.parametrize(
    ("status", "body", "expected", "code", "field"),
    [
        (404, {"error": "no endpoint ep_b (of biz_b)"}, 404, "not_found", None),
        (409, {"error": "changed meanwhile"}, 409, "conflict", None),
        (422, {"error": "url refused: private address", "field": "url"}, 422,
         "validation_failed", "url"),
        (401, {"error": "wrong token", "field": "Authorization"}, 503, "unavailable", None),
        (503, {"error": "standby relay"}, 503, "unavailable", None),
        (500, {"error": "internal error"}, 503, "unavailable", None),
    ],
)  # fmt: skip
async def test_the_relays_refusals_become_the_apis(
    relay: tuple[FakeRelay, RelayClient],
    status: int,
    body: object,
    expected: int,
    code: str,
    field: str | None,
) -> None:
    fake, client = relay
    fake.status, fake.body = status, body
    with pytest.raises(ApiError) as refused:
        await client.call("biz_a", "GET", "/endpoints/ep_b", what="webhook endpoint")
    error = refused.value
    assert (error.status, error.code) == (expected, code)
    if expected == 404:
        assert error.message == "no such webhook endpoint"  # nothing of what the relay said
    if field is not None:
        assert error.details["fields"][0]["path"] == field


async def test_a_relay_away_is_503() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    client = RelayClient(f"http://127.0.0.1:{port}", "platform-token")
    try:
        with pytest.raises(ApiError) as refused:
            await client.call("biz_a", "GET", "/endpoints")
        assert refused.value.status == 503
    finally:
        await client.close()
    without_token = RelayClient(f"http://127.0.0.1:{port}", "")
    with pytest.raises(ApiError) as refused:
        await without_token.call("biz_a", "GET", "/endpoints")
    assert refused.value.status == 503 and "ADMIN_TOKEN" in refused.value.message
