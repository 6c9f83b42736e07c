"""Data keys of customers: one AES-256-GCM key per subject (a conversation, or a stream of
a customer that no conversation names), wrapped by the master key and kept in the table
`customer_keys` (migration 0012), apart from the data it opens.

Destroying a subject's key (crypto-shredding) makes every copy of its events unreadable at
once: the table's rows, its replicas and every backup of `events` taken before. The table is
named by a keyed pseudonym of the subject (HMAC-SHA256 under a key derived from the master
key), never by the subject itself, whose name can hold a phone number.

A rotation of the master key re-wraps the data keys (`rewrap`), never the data.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.secrets import NONCE, KeyProvider, SecretError

log = logging.getLogger("keys")
WRAP_VERSION = 1
KEY_TTL = 5.0  # seconds a process trusts a cached key unless a sweep vouched for it since
SWEEP_SECONDS = KEY_TTL / 2  # how often a service looks for keys destroyed since its last look
PSEUDONYM_KEY = "pseudonyms"  # the row holding the pseudonym key (never erased)
ERASED = None  # a subject whose key is gone, as the cache remembers it


class KeyNotLoaded(Exception):
    """The cipher was asked for a key nobody loaded first: a bug in the store's preparing."""


class KeyRing:
    """Wraps, unwraps and caches data keys; reads and writes them on the connection it is
    given (the store's own), so that a key is created in the transaction of its first event.

    The cache keeps keys by key id for `ttl` seconds, so that every process learns of an
    erasure within that time (an erasure waits that long before it completes); an erased
    subject is cached as erased for good, since a destroyed key never comes back.

    A service also sweeps (`sweep`, every SWEEP_SECONDS): one query for the keys destroyed
    by transactions that may have committed since its last sweep. While the last sweep
    started less than `ttl` ago, it vouches for every key read after the first sweep
    answered, so a customer who writes every few seconds is not read again each time; with
    sweeps failing (the database away), each key falls back to its own `ttl`."""

    def __init__(self, keys: KeyProvider, capacity: int = 100_000, ttl: float = KEY_TTL) -> None:
        self.ttl = ttl
        self.master = keys
        self._wrap = AESGCM(keys.key(b"data keys v1"))
        self._pseudonym_key: bytes | None = None
        self.capacity = capacity
        self._cache: OrderedDict[str, AESGCM | None] = OrderedDict()
        self._loaded: dict[str, float] = {}
        # Sweeps (monotonic times): the first one's answer, the last successful one's start,
        # and the xmin of the last snapshot (every older transaction had finished by then).
        self._baseline: float | None = None
        self._swept_at = float("-inf")
        self._sweep_xmin: int | None = None

    async def start(self, conn: Any) -> KeyRing:
        """Load (or make, once per deployment) the pseudonym key. It is a random key kept
        wrapped in the table like the data keys, not one derived from the master key, so that
        a rotation of the master key leaves every pseudonym as it was."""
        await self.load(conn, {PSEUDONYM_KEY}, create=True)
        row = await conn.fetchrow(
            "SELECT wrapped FROM customer_keys WHERE key_id = $1", PSEUDONYM_KEY
        )
        self._pseudonym_key = self.unwrap(bytes(row["wrapped"]), PSEUDONYM_KEY)
        self._cache.pop(PSEUDONYM_KEY, None)
        return self

    def key_id(self, subject: str) -> str:
        """The subject's keyed pseudonym: what names its key, in the table and in its rows."""
        return self.pseudonym("subject", subject)

    def pseudonym(self, *parts: str) -> str:
        """A keyed pseudonym of `parts`: stable, and not reversible without the key."""
        if self._pseudonym_key is None:
            raise RuntimeError("KeyRing.start() was not awaited")
        mac = hmac.new(self._pseudonym_key, "\x1f".join(parts).encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    # --- the cache, read by the cipher synchronously -------------------------------------------

    def cached(self, key_id: str) -> AESGCM | None:
        """The subject's key; None once erased; KeyNotLoaded if nobody loaded it."""
        try:
            aead = self._cache[key_id]
        except KeyError:
            raise KeyNotLoaded(key_id) from None
        self._cache.move_to_end(key_id)
        return aead

    def is_fresh(self, key_id: str) -> bool:
        """Cached, and either erased or loaded less than `ttl` seconds ago."""
        if key_id not in self._cache:
            return False
        if self._cache[key_id] is ERASED:
            return True
        now, loaded = time.monotonic(), self._loaded.get(key_id, 0.0)
        if now - loaded < self.ttl:
            return True
        # Read after the first sweep had answered: every sweep since looked at what was
        # destroyed after its read, the last of them recently enough.
        return (
            self._baseline is not None
            and loaded > self._baseline
            and (now - self._swept_at < self.ttl)
        )

    def _keep(self, key_id: str, aead: AESGCM | None, read_at: float | None = None) -> None:
        """Cache a key read by a query sent at `read_at` (monotonic; default now). Erased is
        final: a read answered after a sweep or a shred learnt of the destruction (its
        snapshot older than that) must not bring the key back."""
        if aead is not None and key_id in self._cache and self._cache[key_id] is ERASED:
            return
        self._cache[key_id] = aead
        self._loaded[key_id] = time.monotonic() if read_at is None else read_at
        self._cache.move_to_end(key_id)
        while len(self._cache) > self.capacity:
            old, _ = self._cache.popitem(last=False)
            self._loaded.pop(old, None)

    # --- wrapping ------------------------------------------------------------------------------

    def wrap(self, raw: bytes, key_id: str) -> bytes:
        nonce = os.urandom(NONCE)
        return bytes([WRAP_VERSION]) + nonce + self._wrap.encrypt(nonce, raw, key_id.encode())

    def unwrap(self, box: bytes, key_id: str) -> bytes:
        if len(box) < 1 + NONCE + 16 or box[0] != WRAP_VERSION:
            raise SecretError("not a wrapped data key of this version")
        try:
            return self._wrap.decrypt(box[1 : 1 + NONCE], box[1 + NONCE :], key_id.encode())
        except InvalidTag as exc:
            raise SecretError("the data key does not open with this master key") from exc

    # --- the table -----------------------------------------------------------------------------

    async def load(self, conn: Any, key_ids: Iterable[str], create: bool = False) -> None:
        """Bring these keys into the cache (one query for all of them); with `create`, make
        the missing ones (the first writer wins: a loser reads the winner's). A destroyed
        key is never made again: its tombstone stays, and it is cached as erased."""
        wanted = {k for k in key_ids if not self.is_fresh(k)}
        if not wanted:
            return
        read_at = time.monotonic()  # before the query: its snapshot is later than this
        found = None
        if create:
            rows = [(k, self.wrap(AESGCM.generate_key(256), k)) for k in sorted(wanted)]
            if _outside_transaction(conn) and PSEUDONYM_KEY not in wanted:
                # One round trip, and no wait for the WAL flush (migration 0035 says why
                # nothing is lost: what is sealed with a key commits after it).
                found = await conn.fetch(
                    "SELECT * FROM create_customer_keys($1::text[], $2::bytea[])",
                    [k for k, _ in rows],
                    [w for _, w in rows],
                )
            else:
                await conn.executemany(
                    "INSERT INTO customer_keys (key_id, wrapped) VALUES ($1, $2)"
                    " ON CONFLICT (key_id) DO NOTHING",
                    rows,
                )
        if found is None:
            # One probe per key, not `= ANY` (migration 0036 says why).
            found = await conn.fetch("SELECT * FROM read_customer_keys($1::text[])", list(wanted))
        for row in found:
            box = row["wrapped"]
            aead = None if box is None else AESGCM(self.unwrap(bytes(box), row["key_id"]))
            self._keep(row["key_id"], aead, read_at)
        for key_id in wanted - {r["key_id"] for r in found}:
            self._keep(key_id, ERASED)

    async def shred(self, conn: Any, key_ids: Iterable[str]) -> int:
        """Destroy these keys: what they sealed can never be read again, and the subjects
        never get a key again (a tombstone is left, also for a subject that had none yet).
        Returns how many keys were destroyed."""
        ids = sorted(set(key_ids) - {PSEUDONYM_KEY})
        destroyed = await conn.fetchval(
            # erased_xid is set by the table's trigger (migration 0032), for any writer.
            "WITH gone AS (INSERT INTO customer_keys AS k (key_id, wrapped, erased_at)"
            " SELECT unnest($1::text[]), NULL, now()"
            " ON CONFLICT (key_id) DO UPDATE SET wrapped = NULL, erased_at = now()"
            " WHERE k.wrapped IS NOT NULL RETURNING (k.xmax <> 0) AS had_key)"
            " SELECT count(*) FILTER (WHERE had_key) FROM gone",
            ids,
        )
        for key_id in ids:
            self._keep(key_id, ERASED)
        return int(destroyed)

    async def sweep(self, conn: Any) -> int:
        """Learn of the keys destroyed since the last sweep: those of every transaction
        that had not finished at the last sweep's snapshot (one whose id is below that
        snapshot's xmin had finished, and the last sweep, or the read of the key after it,
        saw what it did). The first sweep only takes its place: it vouches for keys read
        after it answered, never for those cached before. Returns how many cached keys it
        found destroyed."""
        started = time.monotonic()
        if self._sweep_xmin is None:
            xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            self._sweep_xmin, self._baseline = int(xmin), time.monotonic()
            return 0
        row = await conn.fetchrow(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, array("
            " SELECT key_id FROM customer_keys WHERE erased_xid >= $1::text::xid8) AS gone",
            str(self._sweep_xmin),
        )
        xmin = int(row["xmin"])
        if xmin < self._sweep_xmin:
            # Another server's ids (a fail-over to a replica that was behind, a restore):
            # ids below the last xmin may be handed out again. Start over, vouching for
            # nothing read before.
            self._sweep_xmin, self._baseline = xmin, time.monotonic()
            self._swept_at = float("-inf")
            return 0
        found = 0
        for key_id in row["gone"]:
            cached = key_id in self._cache
            if cached and self._cache[key_id] is ERASED:
                continue
            # Every id, cached or not: a read of it still on its way must not bring it back.
            found += cached
            self._keep(key_id, ERASED)
        self._sweep_xmin = xmin
        self._swept_at = started
        return found

    async def sweep_forever(self, pool: Any, every: float = SWEEP_SECONDS) -> None:
        """A service's background task: sweep every `every` seconds until cancelled. A
        failed sweep (the database away) is tried again; meanwhile keys fall back to
        their own ttl."""
        while True:
            try:
                async with pool.acquire() as conn:
                    await self.sweep(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("key sweep failed", extra={"fields": {"error": type(exc).__name__}})
            await asyncio.sleep(every)

    async def rewrap(self, conn: Any, old: KeyRing, batch: int = 1000) -> int:
        """Re-wrap every data key wrapped by `old`'s master key under this one (a rotation
        of MASTER_KEY): the data is untouched. Idempotent: a key already re-wrapped is
        skipped. Returns how many were re-wrapped."""
        done = 0
        after = ""
        while True:
            rows = await conn.fetch(
                "SELECT key_id, wrapped FROM customer_keys WHERE key_id > $1"
                " AND wrapped IS NOT NULL ORDER BY key_id LIMIT $2",
                after,
                batch,
            )
            if not rows:
                return done
            for row in rows:
                box = bytes(row["wrapped"])
                try:
                    raw = old.unwrap(box, row["key_id"])
                except SecretError:
                    self.unwrap(box, row["key_id"])  # already under the new key, or broken
                    continue
                # Not over a shred that committed since the read: it stays destroyed.
                await conn.execute(
                    "UPDATE customer_keys SET wrapped = $2 WHERE key_id = $1"
                    " AND wrapped IS NOT NULL",
                    row["key_id"],
                    self.wrap(raw, row["key_id"]),
                )
                done += 1
            after = rows[-1]["key_id"]


_ring: KeyRing | None = None


def install(ring: KeyRing | None) -> None:
    """The process's ring (the runtime installs it when MASTER_KEY is set)."""
    global _ring
    _ring = ring


def installed() -> KeyRing | None:
    return _ring


def _outside_transaction(conn: Any) -> bool:
    """A connection with no transaction open (a pool, or anything else, counts as inside
    one: the safe side, a synchronous commit)."""
    check = getattr(conn, "is_in_transaction", None)
    return callable(check) and not check()
