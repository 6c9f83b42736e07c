"""Process runtime: every service starts through `run_service`. It connects what the service
needs, serves /healthz /readyz /metrics on its port (with the service's own routes), runs its
consumers and background tasks, and stops them in order on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.broker.bus import Bus, Consumer, Service
from shared.config import Settings, load_settings
from shared.crypto import datakeys
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.observability.logging import configure_logging
from shared.observability.tracing import configure_tracing, shutdown_tracing
from shared.services import spec_of
from shared.web import Limits, serve

log = logging.getLogger("runtime")

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]
Closer = Callable[[], Awaitable[Any]]


@dataclass
class Infra:
    """The connections one process holds, opened by the runtime before the service's build.
    A service that runs without the broker or the database has none to ask for."""

    name: str
    settings: Settings
    _bus: Bus | None = None
    _pool: asyncpg.Pool | None = None
    _store: PostgresEventStore | None = None
    # Run at stop, in order, after the consumers and tasks have stopped (HTTP sessions...).
    closers: list[Closer] = field(default_factory=list)

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError(f"{self.name} runs without the broker (run_service broker=False)")
        return self._bus

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} runs without the database (database=False)")
        return self._pool

    @property
    def store(self) -> PostgresEventStore:
        if self._store is None:
            self._store = PostgresEventStore(self.pool)
        return self._store

    async def ready(self) -> tuple[bool, str]:
        if self._bus is not None and not self._bus.ready:
            return False, "broker unreachable"
        if self._pool is not None:
            try:
                async with self._pool.acquire(timeout=2) as conn:
                    await conn.fetchval("SELECT 1", timeout=2)
            except Exception as exc:
                return False, f"database unreachable: {type(exc).__name__}"
        return True, "ok"


@dataclass
class Parts:
    """What a service runs, as its build returns it.

    consumers  Service declarations; the runtime consumes each one's stage.
    app        the service's own routes (and its client_max_size); the health routes are
               added to it. None: an app with the health routes only.
    tasks      coroutines started once the port is served, cancelled at stop.
    ready      checks asked before the infrastructure's on every /readyz (the first that
               fails answers 503 with its reason).
    """

    consumers: list[Service] = field(default_factory=list)
    app: web.Application | None = None
    tasks: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    ready: list[ReadyCheck] = field(default_factory=list)


Build = Callable[[Infra], Awaitable[Parts]]


async def connect_with_retry(
    what: str, fn: Callable[[], Awaitable[Any]], attempts: int = 30
) -> Any:
    """At start-up the broker or database may still be coming up: wait for them."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning(f"{what} not reachable yet", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(min(2.0, 0.2 * attempt))
    raise AssertionError("unreachable")


def session_dsn(dsn: str, name: str) -> str:
    """Tag a service's database sessions with its name (pg_stat_activity shows who is who)."""
    return dsn + ("&" if "?" in dsn else "?") + f"application_name={name}"


async def install_privacy(settings: Settings, pool: asyncpg.Pool) -> None:
    """With a MASTER_KEY, the deployment's key ring and the event store's cipher: customers'
    data keys made and checked (a write for an erased customer is refused), and, with
    PRIVACY_ENCRYPTION on, their data sealed with them (decision 0011). Every service must
    agree: each reads what the others wrote."""
    if not settings.master_key:
        return
    from shared.crypto.personal import PersonalCipher
    from shared.crypto.secrets import MasterKey
    from shared.eventstore.mapper import install_cipher

    async with pool.acquire() as conn:
        ring = await datakeys.KeyRing(MasterKey(settings.master_key)).start(conn)
    datakeys.install(ring)
    install_cipher(PersonalCipher(ring, seal=settings.privacy_encryption))


async def open_infra(
    name: str,
    settings: Settings,
    *,
    broker: bool = True,
    database: bool = True,
    pool_size: tuple[int, int] = (2, 10),
) -> Infra:
    infra = Infra(name, settings)
    if broker:
        bus = Bus(settings)
        await connect_with_retry("broker", bus.connect)
        infra._bus = bus
    if database:
        dsn = session_dsn(settings.database_url, name)
        low, high = pool_size
        infra._pool = await connect_with_retry(
            "database", lambda: create_pool(dsn, min_size=low, max_size=high)
        )
        await install_privacy(settings, infra._pool)
    return infra


async def metrics_view(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def health_routes(app: web.Application, checks: list[ReadyCheck]) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        for check in checks:
            ok, reason = await check()
            if not ok:
                return web.Response(status=503, text=reason)
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        max_connections=settings.http_max_connections,
    )


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def settle_garbage_collector() -> None:
    """What start-up made (modules, classes, settings, pools, the consumers) lives as long as
    the process: moved out of the cyclic collector's sight (gc.freeze), so that its full
    collections scan only what the work makes. Ingress's took 18-22 ms of wall time over
    some 57,000 start-up objects at 1,000 webhooks/s (0.6 ms frozen), a stall for every
    webhook waiting on the loop meanwhile."""
    gc.collect()
    gc.freeze()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "background task died",
            extra={"fields": {"task": task.get_name(), "error": repr(task.exception())}},
        )


async def run_parts(
    name: str,
    settings: Settings,
    build: Build,
    *,
    broker: bool,
    database: bool,
    pool_size: tuple[int, int],
    until: Callable[[], Awaitable[None]] = wait_for_signal,
) -> None:
    """One service's life: open, build, serve, run, and on `until` stop in reverse order."""
    spec = spec_of(name)
    infra = await open_infra(name, settings, broker=broker, database=database, pool_size=pool_size)
    consumers: list[Consumer] = []
    tasks: list[asyncio.Task[None]] = []
    runner: web.AppRunner | None = None
    try:
        ring = datakeys.installed() if infra._pool is not None else None
        if ring is not None:
            # Erasures learnt of by one query every few seconds, not a key read per message.
            tasks.append(asyncio.create_task(ring.sweep_forever(infra._pool), name="key sweep"))
        parts = await build(infra)
        for service in parts.consumers:
            if service.name != spec.stage:
                raise ValueError(f"{name} consumes stage {spec.stage!r}, not {service.name!r}")
            consumer = Consumer(infra.bus, service, settings)
            await consumer.start()
            consumers.append(consumer)
        app = parts.app if parts.app is not None else web.Application()
        health_routes(app, [*parts.ready, infra.ready])
        port = settings.port_of(name)
        # Every service's port behind the one HTTP edge (shared/web): timeouts, a connection
        # cap, client errors as 4xx, security headers.
        runner = await serve(app, settings.bind_address, port, limits_of(settings))
        for make in parts.tasks:
            task = asyncio.create_task(make(), name=f"{name}.{make.__name__}")
            task.add_done_callback(_log_crash)
            tasks.append(task)
        settle_garbage_collector()
        log.info("started", extra={"fields": {"address": settings.bind_address, "port": port}})
        await until()
        log.info("stopping")
    finally:
        # Also after a failed start: what was opened is closed, in reverse order.
        for consumer in consumers:
            await consumer.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if runner is not None:
            await runner.cleanup()
        for close in infra.closers:
            await close()
        if infra._bus is not None:
            await infra._bus.close()
        if infra._pool is not None:
            await infra._pool.close()


def run_service(
    name: str,
    build: Build,
    *,
    broker: bool = True,
    database: bool = True,
    pool_size: tuple[int, int] = (2, 10),
    refuse: Callable[[Settings], str | None] = lambda _: None,
) -> None:
    """The one entry point of every service: `python -m services.<name>`.

    broker, database  what the service connects to (and /readyz checks) before its build.
    pool_size         the database pool's (min, max) connections.
    refuse            a reason not to start at all (exit 2), asked before connecting.
    """
    settings = load_settings()
    configure_logging(name, settings.log_level)
    reason = refuse(settings)
    if reason:
        logging.getLogger(name).error(f"{reason}; refusing to start")
        sys.exit(2)
    configure_tracing(name)

    async def main() -> None:
        try:
            await run_parts(
                name,
                settings,
                build,
                broker=broker,
                database=database,
                pool_size=pool_size,
            )
        finally:
            shutdown_tracing()

    # uvloop's C transports and scheduling cut the loop's own share of the CPU, which the
    # profiles showed at a quarter of each consumer's time.
    uvloop.run(main())
