"""The admin API's shell: refused without ADMIN_TOKEN, bearer checked, and the shipped
OpenAPI description covers exactly the routes served."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from services.webhook_relay.admin import OPENAPI_PATH, setup_admin
from shared.cli import ensure_env_file
from shared.config import load_settings, read_env_file


@pytest_asyncio.fixture
async def serve_admin() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(token: str) -> tuple[web.Application, str]:
        app = web.Application()
        setup_admin(app, lambda: None, token)  # deps None: as a standby would
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
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
    monkeypatch.delenv("WHATSAPP_APP_SECRET", raising=False)
    env = tmp_path / ".env"
    assert ensure_env_file(env) is True
    token = read_env_file(env)["ADMIN_TOKEN"]
    assert len(token) >= 32
    assert load_settings(env={}, env_file=env).admin_token == token
