"""One write of the api: a transaction holding its appends, the tables written with them,
and the Idempotency-Key's answer; it knows its place in the log (the appended events'
(transaction id, global position)), which read-your-writes waits for."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import msgspec

from services.api.errors import ApiError
from shared.crypto.secrets import SecretBox
from shared.eventstore import ANY, Appended, NewEvent, Position
from shared.eventstore.postgres import PostgresEventStore

_LOCK_SPACE = 7243087  # advisory locks of idempotency keys (two-key form, own space)


@dataclass
class Write:
    conn: asyncpg.Connection
    store: PostgresEventStore
    positions: list[Position] = field(default_factory=list)
    _txid: int | None = None

    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]:
        appended = await self.store.append(stream, events, expected_version)
        for one in appended:
            if one.duplicate:
                # Written by an earlier transaction (a retry): wait for that one's place.
                found = await self.store.find(one.event_id)
                if found is not None:
                    self.positions.append(found.position)
                continue
            if self._txid is None:
                self._txid = await self.store.transaction_id()
            self.positions.append(Position(self._txid, one.global_position))
        return appended

    @property
    def position(self) -> Position | None:
        return max(self.positions) if self.positions else None


@contextlib.asynccontextmanager
async def write(pool: asyncpg.Pool) -> AsyncIterator[Write]:
    async with pool.acquire() as conn, conn.transaction():
        yield Write(conn, PostgresEventStore(conn=conn))


def request_hash(method: str, path: str, body: object) -> str:
    """Same key, same body: the body compared as canonical JSON (key order, spacing)."""
    canonical = msgspec.json.encode(body, order="sorted")
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical).hexdigest()


@dataclass(frozen=True)
class Stored:
    status: int
    body: bytes
    position: Position | None = None


class Idempotency:
    """The first answer of every create made with an Idempotency-Key, per caller, kept in
    `api_idempotency` in the create's own transaction: after a restart too."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    async def begin(
        self, conn: asyncpg.Connection, principal: str, key: str, digest: str
    ) -> Stored | None:
        """Inside the write's transaction: waits for a concurrent request with the same key
        to finish, then gives its answer (None: this is the first)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_SPACE, f"{principal}\x1f{key}"
        )
        row = await conn.fetchrow(
            "SELECT request_hash, status, body, sealed, transaction_id, global_position"
            " FROM api_idempotency"
            " WHERE principal = $1 AND key = $2",
            principal,
            key,
        )
        if row is None:
            return None
        if row["request_hash"] != digest:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request",
                fields=[{"path": "Idempotency-Key", "message": "used with another body"}],
            )
        body = bytes(row["body"])
        if row["sealed"]:
            body = self.box.open(body, _context(principal, key)).encode()
        position = None
        if row["transaction_id"] is not None:
            position = Position(row["transaction_id"], row["global_position"])
        return Stored(row["status"], body, position)

    async def store(
        self,
        conn: asyncpg.Connection,
        principal: str,
        key: str,
        digest: str,
        answer: Stored,
        secret: bool = False,
    ) -> None:
        """`secret`: the answer shows a secret (a new API key): kept sealed."""
        body = answer.body
        if secret:
            body = self.box.seal(body.decode(), _context(principal, key))
        await conn.execute(
            "INSERT INTO api_idempotency (principal, key, request_hash, status, body, sealed,"
            " transaction_id, global_position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            principal,
            key,
            digest,
            answer.status,
            body,
            secret,
            answer.position.transaction_id if answer.position else None,
            answer.position.global_position if answer.position else None,
        )


def _context(principal: str, key: str) -> str:
    return f"idempotency:{principal}/{key}"
