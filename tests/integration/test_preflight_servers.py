"""The preflight's reading of real servers' answers: the session's own vhost and database,
a port nobody listens on, a wrong password, a missing vhost, role or exchange type. Nothing
is changed on the servers (no plugin, user or setting)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from ops.preflight import (
    SetupProblem,
    Unreachable,
    check_broker,
    check_database,
    missing_exchange_type,
    server_problems,
)
from tests.e2e.harness import free_port


def with_parts(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    netloc = changes.pop("netloc", parts.netloc)
    return urlunsplit(parts._replace(netloc=netloc, **changes))


async def test_the_sessions_servers_pass(amqp_url: str, database_url: str) -> None:
    assert await server_problems(amqp_url, database_url) == {}


async def test_nobody_listening_is_unreachable(amqp_url: str, database_url: str) -> None:
    port = free_port()
    with pytest.raises(Unreachable, match="connection refused"):
        await check_broker(f"amqp://guest:guest@127.0.0.1:{port}/")
    with pytest.raises(Unreachable, match="connection refused"):
        await check_database(f"postgresql://postgres@127.0.0.1:{port}/x")


async def test_a_wrong_broker_password_is_not_unreachable(amqp_url: str) -> None:
    parts = urlsplit(amqp_url)
    host = parts.netloc.split("@")[-1]
    wrong = with_parts(amqp_url, netloc=f"{parts.username}:wrong-password@{host}")
    with pytest.raises(SetupProblem) as problem:
        await check_broker(wrong)
    assert not isinstance(problem.value, Unreachable)
    [line] = problem.value.lines
    assert "refused the login" in line and "wrong-password" not in line


async def test_a_missing_vhost_is_named(amqp_url: str) -> None:
    with pytest.raises(SetupProblem, match="vhost"):
        await check_broker(with_parts(amqp_url, path="/no-such-vhost-preflight"))


async def test_a_missing_role_points_at_the_user_and_pg_hba(database_url: str) -> None:
    parts = urlsplit(database_url)
    host = parts.netloc.split("@")[-1]
    with pytest.raises(SetupProblem, match=r"pg_hba\.conf") as problem:
        await check_database(with_parts(database_url, netloc=f"no_such_role_preflight@{host}"))
    assert not isinstance(problem.value, Unreachable)


async def test_a_missing_database_is_fine_make_up_creates_it(database_url: str) -> None:
    await check_database(with_parts(database_url, path="/no_such_database_preflight"))


async def test_the_brokers_refusal_of_an_exchange_type_is_recognised(amqp_url: str) -> None:
    """What RabbitMQ answers without the plugin, shown with a type no plugin provides."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        with pytest.raises(Exception) as refused:
            await channel.declare_exchange("preflight-probe", "x-no-such-type", auto_delete=True)
    finally:
        await connection.close()
    assert missing_exchange_type(refused.value, "x-no-such-type")
    assert not missing_exchange_type(refused.value)  # x-consistent-hash is there
