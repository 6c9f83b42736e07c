"""The one runtime every service starts through (shared/runtime.py), in-process against the
real broker and database: health routes next to the service's own, readiness from the
service's checks then the infrastructure's, tasks and closers, the bind address."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from shared.broker.bus import Service
from shared.config import Settings, load_settings
from shared.runtime import Infra, Parts, run_parts
from tests.e2e.harness import free_port


def settings_for(amqp_url: str, database_url: str, tmp_path: Path, **env: str) -> Settings:
    return load_settings(
        env={
            "AMQP_URL": amqp_url,
            "DATABASE_URL": database_url,
            "WEBHOOK_RELAY_PORT": str(free_port()),
            # The session's vhost is shared with the e2e stack, whose retry queues have
            # this TTL (tests/e2e/harness.py): the broker refuses a different one.
            "RETRY_DELAY_MS": "300",
            **env,
        },
        env_file=tmp_path / "absent.env",
    )


class Running:
    """run_parts in a task, stopped by setting `stop`."""

    def __init__(self, settings: Settings, build: Any, **kwargs: Any) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            run_parts(
                "webhook_relay",
                settings,
                build,
                broker=kwargs.get("broker", False),
                database=kwargs.get("database", True),
                pool_size=(1, 2),
                until=self.stop.wait,
            )
        )

    @property
    def base(self) -> str:
        return self.settings.url_of("webhook_relay")

    async def get(self, path: str, host: str | None = None) -> tuple[int, str, str]:
        base = self.base if host is None else f"http://{host}:{self.port}"
        async with aiohttp.ClientSession() as http, http.get(base + path) as resp:
            return resp.status, await resp.text(), resp.headers.get("Content-Type", "")

    @property
    def port(self) -> int:
        return self.settings.port_of("webhook_relay")

    async def serving(self, within: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            if self.task.done():
                self.task.result()  # the start failed: raise its error
            with contextlib.suppress(aiohttp.ClientError):
                await self.get("/healthz")
                return
            assert asyncio.get_running_loop().time() < deadline, "never served"
            await asyncio.sleep(0.05)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Running]]:
    runs: list[Running] = []

    def start(settings: Settings, build: Any, **kwargs: Any) -> Running:
        runs.append(Running(settings, build, **kwargs))
        return runs[-1]

    yield start
    for run in runs:
        if not run.task.done():
            await run.finish()


def refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0


async def test_health_routes_beside_the_services_own_readiness_tasks_and_closers(
    started: Callable[..., Running], amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    events: list[str] = []
    leading = False
    task_started = asyncio.Event()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def background() -> None:
        task_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            events.append("task cancelled")

    async def is_leading() -> tuple[bool, str]:
        return leading, "standby: not yet"

    async def build(infra: Infra) -> Parts:
        assert await infra.pool.fetchval("SELECT 1") == 1
        with pytest.raises(RuntimeError, match="without the broker"):
            _ = infra.bus

        async def close_first() -> None:
            events.append("closer 1")

        async def close_second() -> None:
            events.append("closer 2")

        infra.closers.extend([close_first, close_second])
        app = web.Application()
        app.router.add_get("/hello", hello)
        return Parts(app=app, tasks=[background], ready=[is_leading])

    run = started(settings_for(amqp_url, database_url, tmp_path), build)
    await run.serving()
    await asyncio.wait_for(task_started.wait(), 10)
    assert (await run.get("/hello"))[:2] == (200, "hello")
    assert (await run.get("/healthz"))[:2] == (200, "ok")
    status, body, content_type = await run.get("/metrics")
    assert status == 200 and content_type.startswith("text/plain") and "# TYPE" in body
    assert (await run.get("/readyz"))[:2] == (503, "standby: not yet")
    leading = True
    assert (await run.get("/readyz"))[:2] == (200, "ok")

    await run.finish()
    assert events == ["task cancelled", "closer 1", "closer 2"]
    assert refused("127.0.0.1", run.port)  # run_parts returned: the port is closed


async def test_a_broker_only_service_is_ready_on_the_broker_alone(
    started: Callable[..., Running], amqp_url: str, tmp_path: Path
) -> None:
    """Ingress's shape: no database at all, not even a bad DATABASE_URL matters."""

    async def build(infra: Infra) -> Parts:
        with pytest.raises(RuntimeError, match="without the database"):
            _ = infra.pool
        assert infra.bus.ready
        return Parts()

    settings = settings_for(amqp_url, "postgresql://nobody@127.0.0.1:1/none", tmp_path)
    run = started(settings, build, broker=True, database=False)
    await run.serving()
    assert (await run.get("/readyz"))[:2] == (200, "ok")


async def test_what_start_up_made_is_out_of_the_collectors_scans_once_serving(
    started: Callable[..., Running], amqp_url: str, tmp_path: Path
) -> None:
    """gc.freeze after the start: a full collection then scans only what the work made
    (ingress's took about 20 ms each before, with some 57,000 start-up objects)."""

    class Made:
        pass

    made = Made()
    made.me = made  # type: ignore[attr-defined]  # a cycle: the collector tracks it

    async def build(infra: Infra) -> Parts:
        return Parts()

    gc.unfreeze()
    assert any(o is made for o in gc.get_objects())
    try:
        run = started(settings_for(amqp_url, "", tmp_path), build, broker=True, database=False)
        await run.serving()
        assert gc.get_freeze_count() > 0
        assert not any(o is made for o in gc.get_objects())
    finally:
        gc.unfreeze()  # the rest of the tests' process as it was


async def test_services_bind_loopback_by_default_and_bind_address_moves_them(
    started: Callable[..., Running], amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    async def build(_: Infra) -> Parts:
        return Parts()

    default = started(settings_for(amqp_url, database_url, tmp_path), build)
    await default.serving()
    assert default.settings.bind_address == "127.0.0.1"
    # 127.0.0.2 is this machine too: only a wildcard bind would answer there.
    assert refused("127.0.0.2", default.port)

    moved = started(settings_for(amqp_url, database_url, tmp_path, BIND_ADDRESS="127.0.0.2"), build)
    await moved.serving()
    assert moved.base.startswith("http://127.0.0.2:")
    assert (await moved.get("/healthz"))[0] == 200
    assert refused("127.0.0.1", moved.port)


async def test_a_consumer_of_another_stage_is_refused_and_what_was_opened_is_closed(
    amqp_url: str, database_url: str, tmp_path: Path
) -> None:
    opened: list[Infra] = []

    async def build(infra: Infra) -> Parts:
        opened.append(infra)
        return Parts(consumers=[Service("outbound")])  # the relay consumes no stage

    with pytest.raises(ValueError, match="consumes stage None, not 'outbound'"):
        await run_parts(
            "webhook_relay",
            settings_for(amqp_url, database_url, tmp_path),
            build,
            broker=False,
            database=True,
            pool_size=(1, 2),
            until=asyncio.Event().wait,
        )
    [infra] = opened
    assert infra.pool.is_closing()
