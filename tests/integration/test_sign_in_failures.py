"""Failed console sign-ins on a real PostgreSQL: a key is blocked past the allowance, the
email from any address; two api instances count the same attempts; attempts in parallel
count against each other; a successful or refused attempt is forgotten; attempts older than
the window no longer count and are swept; only digests are stored."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.api.console.failures import Failures, digest


async def test_the_allowance_is_shared_by_instances_and_the_window_slides(
    pg_pool: asyncpg.Pool,
) -> None:
    ip, email, other = (f"ip:{uuid.uuid4()}", f"email:{uuid.uuid4()}@x", f"email:{uuid.uuid4()}")
    one, two = Failures(pg_pool, allowed=3), Failures(pg_pool, allowed=3)
    for instance in (one, two, one):  # three failures, on two instances
        assert not (await instance.attempt(ip, email)).blocked
    assert (await two.attempt(ip, email)).blocked
    assert (await one.attempt(f"ip:{uuid.uuid4()}", email)).blocked  # the email, anywhere
    assert not (await one.attempt(f"ip:{uuid.uuid4()}", other)).blocked
    # Refused attempts were not recorded: still three for the email.
    [n] = await _counts(pg_pool, email)
    assert n == 3

    # Age the failures past the window: they no longer count.
    await pg_pool.execute(
        "UPDATE console_sign_in_failures SET failed_at = now() - interval '16 minutes'"
        " WHERE key_hash = ANY($1::text[])",
        [digest(ip), digest(email)],
    )
    assert not (await one.attempt(ip, email)).blocked
    # Only digests: neither the address nor the email is in the table.
    text = await pg_pool.fetchval("SELECT string_agg(key_hash, ',') FROM console_sign_in_failures")
    assert ip not in text and email not in text


async def test_parallel_attempts_count_and_a_success_is_forgotten(pg_pool: asyncpg.Pool) -> None:
    email = f"email:{uuid.uuid4()}"
    failures = Failures(pg_pool, allowed=3)
    attempts = await asyncio.gather(*(failures.attempt(email) for _ in range(8)))
    # However they interleave, at most the allowance passes the check.
    assert sum(not a.blocked for a in attempts) <= 3
    assert sum(a.blocked for a in attempts) >= 5
    passed = [a for a in attempts if not a.blocked]
    for a in passed:
        await a.forget()  # they succeeded: no failures left
    assert await _counts(pg_pool, email) == []
    assert not (await failures.attempt(email)).blocked


async def test_prune_forgets_only_what_is_past_the_window(pg_pool: asyncpg.Pool) -> None:
    failures = Failures(pg_pool)
    old, recent = f"email:{uuid.uuid4()}", f"email:{uuid.uuid4()}"
    await failures.attempt(old)
    await failures.attempt(recent)
    await pg_pool.execute(
        "UPDATE console_sign_in_failures SET failed_at = now() - interval '1 hour'"
        " WHERE key_hash = $1",
        digest(old),
    )
    assert await failures.prune() >= 1
    assert await _counts(pg_pool, old) == [] and await _counts(pg_pool, recent) == [1]


async def _counts(pool: asyncpg.Pool, key: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT count(*) AS n FROM console_sign_in_failures WHERE key_hash = $1 GROUP BY key_hash",
        digest(key),
    )
    return [r["n"] for r in rows]
