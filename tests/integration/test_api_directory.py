"""The api's directory writer against real PostgreSQL: events and tables in one transaction,
secrets sealed and never in an event, a number taken once, a WABA owned by one business,
keys as hashes, and the default business that `make up` keeps up to date."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from services.api import directory
from services.api.auth import hash_key
from services.api.botpublish import DEFAULT_BOT
from services.api.errors import ApiError
from services.api.schemas import CreateNumber, PatchNumber
from services.api.writes import write
from shared.config import Settings
from shared.crypto.secrets import MasterKey, SecretBox, new_master_key
from shared.directory import Directory

KEY = new_master_key()
BOX = SecretBox(MasterKey(KEY))
ACTOR = directory.Actor("platform", {"actor": "platform"})


def meta_id() -> str:
    return "".join(random.choice("0123456789") for _ in range(15))


async def business(pool: asyncpg.Pool) -> str:
    async with write(pool) as w:
        return await directory.create_business(w, ACTOR, name="Acme")


def number_body(**kw: object) -> CreateNumber:
    fields = {"phone_number_id": meta_id(), "waba_id": meta_id(), "access_token": "tok-secret"}
    return CreateNumber(**{**fields, **kw})  # type: ignore[arg-type]


async def events_text(pool: asyncpg.Pool, business_id: str) -> str:
    rows = await pool.fetch(
        "SELECT type, data::text AS data, metadata::text AS meta FROM events"
        " WHERE stream_name = $1 ORDER BY stream_version",
        f"business-{business_id}",
    )
    return "\n".join(f"{r['type']} {r['data']} {r['meta']}" for r in rows)


async def events_of(pool: asyncpg.Pool, business_id: str, type_: str) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT data::text AS data FROM events WHERE stream_name = $1 AND type = $2"
        " ORDER BY stream_version",
        f"business-{business_id}",
        type_,
    )
    return [json.loads(r["data"]) for r in rows]


async def test_a_number_is_routable_at_once_with_its_secrets_sealed(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    b = await business(pg_pool)
    body = number_body(app_secret="app-secret-1", verify_token="verify-1")
    async with write(pg_pool) as w:
        await directory.register_number(w, BOX, ACTOR, b, body)
    reader = Directory(Settings(database_url=database_url, master_key=KEY), pg_pool)
    found = await reader.number(body.phone_number_id)
    assert found is not None and found.business_id == b
    assert (found.access_token, found.app_secret, found.verify_token) == (
        "tok-secret",
        "app-secret-1",
        "verify-1",
    )
    stored = await events_text(pg_pool, b)
    assert (await events_of(pg_pool, b, "NumberRegistered"))[0]["own_app"] is True
    for secret in ("tok-secret", "app-secret-1", "verify-1"):
        assert secret not in stored
    sealed = await pg_pool.fetch(
        "SELECT sealed FROM secrets WHERE owner = $1", f"number:{body.phone_number_id}"
    )
    assert len(sealed) == 3 and all(b"tok-secret" not in bytes(r["sealed"]) for r in sealed)


async def test_number_taken_and_waba_taken(pg_pool: asyncpg.Pool) -> None:
    a, b = await business(pg_pool), await business(pg_pool)
    body = number_body()
    async with write(pg_pool) as w:
        await directory.register_number(w, BOX, ACTOR, a, body)
    with pytest.raises(ApiError) as taken:
        async with write(pg_pool) as w:
            await directory.register_number(
                w, BOX, ACTOR, b, number_body(phone_number_id=body.phone_number_id)
            )
    assert taken.value.code == "number_taken"
    with pytest.raises(ApiError) as waba:
        async with write(pg_pool) as w:
            await directory.register_number(w, BOX, ACTOR, b, number_body(waba_id=body.waba_id))
    assert waba.value.code == "waba_taken"
    # Nothing of the refused writes stayed: no event, no row.
    assert "NumberRegistered" not in await events_text(pg_pool, b)
    assert not await pg_pool.fetch("SELECT 1 FROM directory_numbers WHERE business_id = $1", b)


async def test_two_businesses_racing_for_one_number_one_wins(pg_pool: asyncpg.Pool) -> None:
    a, b = await business(pg_pool), await business(pg_pool)
    number = meta_id()

    async def register(owner: str) -> str:
        try:
            async with write(pg_pool) as w:
                await directory.register_number(
                    w, BOX, ACTOR, owner, number_body(phone_number_id=number)
                )
        except ApiError as exc:
            return exc.code
        return "ok"

    results = await asyncio.gather(register(a), register(b))
    assert sorted(results) == ["number_taken", "ok"]
    rows = await pg_pool.fetch(
        "SELECT count(*) AS n FROM events WHERE type = 'NumberRegistered'"
        " AND data->>'phone_number_id' = $1",
        number,
    )
    assert rows[0]["n"] == 1


async def test_patch_records_what_changed_never_the_secret(pg_pool: asyncpg.Pool) -> None:
    b = await business(pg_pool)
    body = number_body()
    async with write(pg_pool) as w:
        await directory.register_number(w, BOX, ACTOR, b, body)
    async with write(pg_pool) as w:
        patch = PatchNumber(persona="You are Ada.", access_token="tok-2", app_secret="app-2")
        await directory.update_number(w, BOX, ACTOR, b, body.phone_number_id, patch)
    stored = await events_text(pg_pool, b)
    (updated,) = await events_of(pg_pool, b, "NumberUpdated")
    assert updated["persona"] == "You are Ada."
    assert updated["secrets_changed"] == ["access_token", "app_secret"]
    assert "tok-2" not in stored and "app-2" not in stored
    row = await pg_pool.fetchrow(
        "SELECT persona, own_app FROM directory_numbers WHERE phone_number_id = $1",
        body.phone_number_id,
    )
    assert row["persona"] == "You are Ada." and row["own_app"] is True


async def test_keys_are_hashes_and_a_revoked_one_is_marked(pg_pool: asyncpg.Pool) -> None:
    b = await business(pg_pool)
    async with write(pg_pool) as w:
        key_id, key = await directory.issue_key(w, ACTOR, b, "ci", "agent")
    assert key.startswith("wak_")
    row = await pg_pool.fetchrow("SELECT key_hash FROM api_keys WHERE key_id = $1", key_id)
    assert row["key_hash"] == hash_key(key)
    assert key not in await events_text(pg_pool, b)
    async with write(pg_pool) as w:
        await directory.revoke_key(w, ACTOR, b, key_id)
    assert await pg_pool.fetchval(
        "SELECT revoked_at IS NOT NULL FROM api_keys WHERE key_id = $1", key_id
    )
    assert "ApiKeyRevoked" in await events_text(pg_pool, b)


async def test_the_default_business_once_and_its_number_kept_up_to_date(
    database_url: str, pg_pool: asyncpg.Pool
) -> None:
    await pg_pool.execute("DELETE FROM api_keys WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM directory_numbers WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM directory_wabas WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM directory_businesses WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM events WHERE stream_name = 'business-default'")
    number = meta_id()
    env = Settings(
        database_url=database_url,
        master_key=KEY,
        whatsapp_phone_number_id=number,
        whatsapp_waba_id=meta_id(),
        whatsapp_access_token="env-token-1",
        default_business_name="Mine",
    )
    business_id, key = await directory.ensure_default_business(pg_pool, env)
    assert business_id == "default" and key is not None and key.startswith("wak_")
    again, no_key = await directory.ensure_default_business(pg_pool, env)
    assert (again, no_key) == ("default", None)
    reader = Directory(env, pg_pool)
    found = await reader.number(number)
    assert found is not None and found.access_token == "env-token-1"
    # The user fills in .env later: the next `make up` brings the number up to date.
    later = replace(
        env,
        whatsapp_access_token="env-token-2",
        whatsapp_rate_per_second=40.0,
        extra={"BOT_PERSONA": "You are Bob."},
    )
    await directory.ensure_default_business(pg_pool, later)
    await reader.reload()
    found = await reader.number(number)
    assert found is not None
    assert (found.access_token, found.send_rate_per_second, found.persona) == (
        "env-token-2",
        40.0,
        "You are Bob.",
    )
    stored = await events_text(pg_pool, "default")
    assert "env-token" not in stored and stored.count("NumberUpdated") == 1
    await directory.ensure_default_business(pg_pool, later)  # nothing changed: no event
    assert (await events_text(pg_pool, "default")).count("NumberUpdated") == 1
    assert await pg_pool.fetchval(
        "SELECT is_default FROM directory_businesses WHERE business_id = 'default'"
    )


def test_business_ids_are_opaque_and_unique() -> None:
    ids = {directory.new_business_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("biz_") for i in ids)


async def test_make_up_installs_the_default_bot_only_without_an_llm_key(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    await pg_pool.execute("DELETE FROM api_keys WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM directory_numbers WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM directory_wabas WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM directory_businesses WHERE business_id = 'default'")
    await pg_pool.execute("DELETE FROM events WHERE stream_name = 'business-default'")
    with_llm, without = meta_id(), meta_id()
    base = Settings(
        database_url=database_url,
        master_key=KEY,
        whatsapp_waba_id=meta_id(),
        whatsapp_access_token="env-token",
    )
    await directory.ensure_default_business(
        pg_pool, replace(base, whatsapp_phone_number_id=with_llm, openai_api_key="sk-test")
    )
    assert await bot_events(pg_pool, with_llm) == []  # the LLM answers it
    plain = replace(base, whatsapp_phone_number_id=without)
    await directory.ensure_default_business(pg_pool, plain)
    await directory.ensure_default_business(pg_pool, plain)  # once, not per `make up`
    [(kind, data)] = await bot_events(pg_pool, without)
    assert kind == "BotPublished" and data["version"] == 1 and data["actor"] == "make-up"
    assert data["source"] == DEFAULT_BOT.read_text()
    assert (
        await pg_pool.fetchval(
            "SELECT bot_version FROM directory_numbers WHERE phone_number_id = $1", without
        )
        == 1
    )


async def bot_events(pool: asyncpg.Pool, number: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT type, data FROM events WHERE stream_name = $1 ORDER BY stream_version",
        f"bot-{number}",
    )
    return [(r["type"], r["data"]) for r in rows]
