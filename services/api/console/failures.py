"""Failed sign-ins, per address and per email, in a sliding window, kept in PostgreSQL:
every api instance counts the same failures, so running two does not double the attempts
a guesser gets.

An attempt is recorded (and committed) before its password is checked, then counted: so
guesses sent in parallel count against each other instead of all passing the check while
the slow hash runs. A successful attempt removes its rows, and so does one refused for the
limit (it was not a guess). Keys are kept as keyed pseudonyms (the deployment's pseudonym
key; a SHA-256 without MASTER_KEY), never the address or the email."""

from __future__ import annotations

import hashlib

import asyncpg

from shared.crypto import datakeys

FAILURES_ALLOWED = 10  # per address and per email, in WINDOW seconds
WINDOW = 15 * 60.0
PRUNE_EVERY = 500  # attempts by an instance between two sweeps of every old row


def digest(key: str) -> str:
    ring = datakeys.installed()
    if ring is not None:
        return ring.pseudonym("sign-in", key)
    return hashlib.sha256(key.encode()).hexdigest()


class Attempt:
    """One sign-in attempt's rows: forgotten when it succeeds or is refused for the limit."""

    def __init__(self, failures: Failures, ids: list[int], blocked: bool) -> None:
        self.failures, self.ids, self.blocked = failures, ids, blocked

    async def forget(self) -> None:
        await self.failures.pool.execute(
            "DELETE FROM console_sign_in_failures WHERE id = ANY($1::bigint[])", self.ids
        )


class Failures:
    def __init__(
        self, pool: asyncpg.Pool, allowed: int = FAILURES_ALLOWED, window: float = WINDOW
    ) -> None:
        self.pool, self.allowed, self.window = pool, allowed, window
        self._added = 0

    async def attempt(self, *keys: str) -> Attempt:
        """Record an attempt for each key; `blocked` if any key has more than `allowed`
        within the window with it (this one included)."""
        digests = [digest(k) for k in keys]
        ids = [
            r["id"]
            for r in await self.pool.fetch(
                "INSERT INTO console_sign_in_failures (key_hash)"
                " SELECT unnest($1::text[]) RETURNING id",
                digests,
            )
        ]
        most = await self.pool.fetchval(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM console_sign_in_failures"
            " WHERE key_hash = ANY($1::text[])"
            " AND failed_at > now() - make_interval(secs => $2) GROUP BY key_hash) k",
            digests,
            self.window,
        )
        self._added += 1
        if self._added % PRUNE_EVERY == 0:
            await self.prune()
        attempt = Attempt(self, ids, bool(most > self.allowed))
        if attempt.blocked:
            await attempt.forget()
        return attempt

    async def prune(self) -> int:
        """Forget every failure older than the window (a flood of made-up emails)."""
        status = await self.pool.execute(
            "DELETE FROM console_sign_in_failures"
            " WHERE failed_at <= now() - make_interval(secs => $1)",
            self.window,
        )
        return int(status.split()[-1])
