"""Isolation of one test run: a broker vhost and a database nobody else uses.

With a Docker engine the run gets throwaway containers; without one (CI boxes, this dev
machine) it carves a fresh vhost and database out of the local servers, so runs never see
each other's queues or events and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from ops.preflight import PLUGINS
from shared.eventstore.migrate import migrate

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/whatsapp_bot"

RABBITMQ_IMAGE = "rabbitmq:3.13-management"
POSTGRES_IMAGE = "postgres:16"

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run that also works when called from inside a running loop (async fixtures)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def docker_engine_available() -> bool:
    """True when a Docker engine answers quickly; a bare client without an engine is False."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@dataclass
class Infra:
    amqp_url: str
    database_url: str
    _cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def cleanup(self) -> None:
        """Undo start_infra in reverse order; best effort, a failed step never hides others."""
        while self._cleanups:
            step = self._cleanups.pop()
            try:
                step()
            except Exception:
                pass


def images_present(*images: str) -> bool:
    """The engine holds these images already. An engine that cannot pull (machines with no
    registry, docs/docker.md) and lacks them leaves the run on the local servers."""
    result = subprocess.run(
        ["docker", "image", "inspect", *images], capture_output=True, timeout=15, check=False
    )
    return result.returncode == 0


def start_infra() -> Infra:
    if docker_engine_available() and images_present(RABBITMQ_IMAGE, POSTGRES_IMAGE):
        return _start_containers()
    return _start_local()


# --- Docker ----------------------------------------------------------------------------------


def _start_containers() -> Infra:
    # Imported lazily: testcontainers talks to the engine at import time in some versions.
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14 kept modules at the top level
        from testcontainers.postgres import PostgresContainer

    infra = Infra(amqp_url="", database_url="")
    try:
        # Generic container rather than testcontainers' RabbitMqContainer, which needs pika.
        rabbit = DockerContainer(RABBITMQ_IMAGE).with_exposed_ports(5672)
        rabbit.start()
        infra._cleanups.append(rabbit.stop)
        wait_for_logs(rabbit, "Server startup complete", timeout=120)
        code, out = rabbit.get_wrapped_container().exec_run(
            ["rabbitmq-plugins", "enable", "rabbitmq_consistent_hash_exchange"]
        )
        if code != 0:
            raise RuntimeError(f"enabling consistent hash exchange failed: {out!r}")
        host = rabbit.get_container_host_ip()
        infra.amqp_url = f"amqp://guest:guest@{host}:{rabbit.get_exposed_port(5672)}/"

        postgres = PostgresContainer(POSTGRES_IMAGE, driver=None)
        postgres.start()
        infra._cleanups.append(postgres.stop)
        infra.database_url = postgres.get_connection_url()
        _run(migrate(infra.database_url))
    except BaseException:
        infra.cleanup()
        raise
    return infra


# --- Local servers ---------------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def _enable_plugins() -> None:
    """The services need the consistent-hash exchange type: on a machine where RabbitMQ was
    just installed, `make test` enables its plugins as `make up` does (idempotent, a no-op
    when they are on), rather than every stack failing to start."""
    listed = subprocess.run(
        ["rabbitmq-plugins", "list", "-e", "-m"], capture_output=True, text=True, timeout=60
    )
    if not set(PLUGINS) <= set(listed.stdout.split()):
        subprocess.run(["rabbitmq-plugins", "enable", *PLUGINS], check=True, timeout=120)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


async def _create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        # FORCE: services killed mid-test may leave sessions that would block the drop.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _start_local() -> Infra:
    base_amqp = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    base_db = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    suffix = uuid.uuid4().hex[:12]
    vhost = f"test-{suffix}"
    dbname = f"test_{suffix}"
    user = unquote(urlsplit(base_amqp).username or "guest")
    admin_url = _with_path(base_db, "/postgres")

    infra = Infra(
        amqp_url=_with_path(base_amqp, "/" + quote(vhost, safe="")),
        database_url=_with_path(base_db, "/" + dbname),
    )
    try:
        _rabbitmqctl("add_vhost", vhost)
        infra._cleanups.append(lambda: _rabbitmqctl("delete_vhost", vhost))
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        _enable_plugins()

        _run(_create_database(admin_url, dbname))
        infra._cleanups.append(lambda: _run(_drop_database(admin_url, dbname)))
        _run(migrate(infra.database_url))
    except BaseException:
        infra.cleanup()
        raise
    return infra


def scratch_vhost(amqp_url: str) -> tuple[str, Callable[[], None]]:
    """A vhost of its own on the same broker, for a test that declares stages another
    stack in the session also consumes. Returns its URL and the clean-up."""
    vhost = f"scratch-{uuid.uuid4().hex[:12]}"
    user = unquote(urlsplit(amqp_url).username or "guest")
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return _with_path(amqp_url, "/" + quote(vhost, safe="")), lambda: _rabbitmqctl(
        "delete_vhost", vhost
    )
