"""Shared fixtures: one isolated broker vhost + database per session, fakes per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

from shared.eventstore.postgres import create_pool
from tests.support.fakes import FakeGraphAPI, FakeOpenAI
from tests.support.infra import Infra, _run, _with_path, start_infra

GRAPH_ACCESS_TOKEN = "test-token"
OPENAI_API_KEY = "test-key"


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Started lazily: tests that use neither broker nor database run without either.
    started = start_infra()
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture(scope="session")
def amqp_url(infra: Infra) -> str:
    return infra.amqp_url


@pytest.fixture(scope="session")
def database_url(infra: Infra) -> str:
    return infra.database_url


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """A database of its own, empty (no migrations run), dropped after the test."""
    name = f"sub_{uuid.uuid4().hex[:12]}"
    admin = _with_path(database_url, "/postgres")

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_path(database_url, "/" + name)
    finally:
        _run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture
async def pg_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def fake_graph() -> Iterator[FakeGraphAPI]:
    server = FakeGraphAPI(access_token=GRAPH_ACCESS_TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=OPENAI_API_KEY).start()
    try:
        yield server
    finally:
        server.stop()
