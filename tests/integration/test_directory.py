"""The directory as services read it, against real PostgreSQL: numbers with their sealed
secrets, the default business's catch-all, a number found the moment it is committed, and
a NOTIFY reloading every reader."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import replace

import asyncpg
import pytest

from shared.config import Settings
from shared.crypto.secrets import MasterKey, SecretBox, SecretError, new_master_key
from shared.directory import (
    DEFAULT_BUSINESS,
    RELOAD_SECONDS,
    Directory,
    app_id,
    secret_context,
    secret_owner,
)
from shared.eventstore import StoreUnavailable

KEY = new_master_key()


def settings(database_url: str, **kw: str) -> Settings:
    base = Settings(
        database_url=database_url,
        master_key=KEY,
        whatsapp_app_secret="deployment-secret",
        whatsapp_access_token="env-token",
    )
    return replace(base, **kw)


async def register(conn: asyncpg.Connection, business: str, number: str, **secrets: str) -> None:
    box = SecretBox(MasterKey(KEY))
    await conn.execute(
        "INSERT INTO directory_businesses (business_id, name, version, created_at, updated_at)"
        " VALUES ($1, $1, 0, now(), now()) ON CONFLICT DO NOTHING",
        business,
    )
    await conn.execute(
        "INSERT INTO directory_numbers (phone_number_id, business_id, waba_id, persona,"
        " created_at, updated_at) VALUES ($1, $2, $3, 'You are Bob.', now(), now())",
        number,
        business,
        f"waba-{number}",
    )
    for name, value in secrets.items():
        await conn.execute(
            "INSERT INTO secrets (owner, name, sealed) VALUES ($1, $2, $3)",
            secret_owner(number),
            name,
            box.seal(value, secret_context(number, name)),
        )


def test_a_sealed_secret_opens_only_with_its_key_and_on_its_row() -> None:
    box = SecretBox(MasterKey(KEY))
    sealed = box.seal("token-1", "number:1/access_token")
    assert box.open(sealed, "number:1/access_token") == "token-1"
    assert b"token-1" not in sealed
    with pytest.raises(SecretError):
        box.open(sealed, "number:2/access_token")  # copied onto another row
    with pytest.raises(SecretError):
        SecretBox(MasterKey(new_master_key())).open(sealed, "number:1/access_token")
    with pytest.raises(SecretError):
        MasterKey("too short")


async def test_numbers_come_with_their_secrets_and_unknown_ones_go_to_the_default(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    business, number = f"biz_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12]
    directory = Directory(settings(database_url), pg_pool)
    await directory.start()
    try:
        # Registered after the directory loaded: found by a point query, at once.
        async with pg_pool.acquire() as conn:
            await register(conn, business, number, access_token="t-1", app_secret="app-1")
        found = await directory.number(number)
        assert found is not None
        assert (found.business_id, found.access_token, found.app_secret) == (
            business,
            "t-1",
            "app-1",
        )
        assert found.persona == "You are Bob." and found.app == app_id("app-1")
        assert "t-1" not in repr(found) and "app-1" not in repr(found)
        # Anything else belongs to the default business (no WHATSAPP_PHONE_NUMBER_ID).
        other = await directory.number("999")
        assert other is not None and other.business_id == DEFAULT_BUSINESS
        assert other.access_token == "env-token"
        assert {a.app for a in directory.app_secrets()} >= {"default", app_id("app-1")}
    finally:
        await directory.stop()


class _PausedReads:
    """A pool whose whole-directory read (the reload's) waits after reading until let go:
    a reload that read before a registration and finishes after the number was found."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.read = asyncio.Event()
        self.go = asyncio.Event()

    def acquire(self) -> object:
        outer = self

        class _Held:
            async def __aenter__(self) -> object:
                self.cm = outer.pool.acquire()
                conn = await self.cm.__aenter__()

                class _Conn:
                    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
                        rows = await conn.fetch(query, *args)
                        if "directory_numbers" in query and not args:
                            outer.read.set()
                            await outer.go.wait()
                        return rows

                    def __getattr__(self, name: str) -> object:
                        return getattr(conn, name)

                return _Conn()

            async def __aexit__(self, *exc: object) -> None:
                await self.cm.__aexit__(*exc)

        return _Held()


async def test_a_reload_that_read_before_a_registration_keeps_the_number_found_since(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    business, number = f"biz_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12]
    paused = _PausedReads(pg_pool)
    directory = Directory(settings(database_url), paused)  # type: ignore[arg-type]
    reloading = asyncio.create_task(directory.reload())
    await asyncio.wait_for(paused.read.wait(), 10)  # it has read: the number is not there
    async with pg_pool.acquire() as conn:
        await register(conn, business, number, access_token="t-1", app_secret="app-2")
    assert (await directory.number(number)).business_id == business  # type: ignore[union-attr]
    paused.go.set()
    await asyncio.wait_for(reloading, 10)
    assert directory.cached(number).business_id == business  # type: ignore[union-attr]
    assert app_id("app-2") in {a.app for a in directory.app_secrets()}


async def test_with_a_pinned_default_number_others_belong_to_nobody(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    directory = Directory(settings(database_url, whatsapp_phone_number_id="555"), pg_pool)
    assert await directory.number("555") is not None
    assert await directory.number("556") is None
    assert directory.business_of_waba("unknown-waba") is None


async def test_the_copy_in_memory_follows_the_tables_within_the_reload_period(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    business, number = f"biz_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:12]
    directory = Directory(settings(database_url), pg_pool)
    await directory.start()
    try:
        cached = directory.cached(number)
        assert cached is not None and cached.business_id == DEFAULT_BUSINESS  # from memory
        async with pg_pool.acquire() as conn:
            await register(conn, business, number, app_secret="app-2")
        loaded = directory.reloads
        started = asyncio.get_running_loop().time()
        while directory.reloads < loaded + 2:  # one reload that began after the commit
            await asyncio.sleep(0.05)
            assert asyncio.get_running_loop().time() - started < 3 * RELOAD_SECONDS
        cached = directory.cached(number)
        assert cached is not None and cached.business_id == business
        assert app_id("app-2") in {a.app for a in directory.app_secrets()}
    finally:
        await directory.stop()


async def test_a_lookup_with_the_database_away_is_an_outage_not_an_unknown_number(
    database_url: str,
) -> None:
    """A number missing from memory cannot be answered as the default business's while the
    database is away: the lookup raises StoreUnavailable, which the bus waits out (a raw
    connection error counted against the message and dead-lettered it)."""
    # A pool whose server is gone: a port where nothing listens.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{port}/x", min_size=0)
    async with pool:
        directory = Directory(settings(database_url), pool)
        with pytest.raises(StoreUnavailable):
            await directory.number("not-in-memory")
        with pytest.raises(StoreUnavailable):
            await directory.reload()
