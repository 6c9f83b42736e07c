"""PostgreSQL event store (asyncpg)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
from opentelemetry.trace import SpanKind

from shared.eventstore import (
    ANY,
    START,
    Appended,
    NewEvent,
    Position,
    RecordedEvent,
    StoreUnavailable,
    StreamWrite,
    WrongExpectedVersion,
    category,
)
from shared.observability import metrics, tracing

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

# The server is gone or going (restart, crash, network), not a problem with the statement.
# OSError covers refused connections and timeouts.
_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    # The server's (or the role's) connection limit is reached: other clients are holding
    # them. Nothing wrong with the message, so wait and retry rather than dead-letter it.
    asyncpg.TooManyConnectionsError,
)
UNAVAILABLE_RETRY_DELAY = 0.5

_COLUMNS = (
    "event_id, stream_name, stream_version, global_position, transaction_id::text AS txid, "
    "type, data, metadata, recorded_at"
)


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb through msgspec: faster than the json module and the same codec as the bus."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + _json_encode(v),
        decoder=lambda b: _json_decode(b[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL): nothing here sets session state, and the query is a round trip on every
    release. asyncpg still rolls back a transaction left open before calling this."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=keep_session,
        command_timeout=30,
    )


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"database unavailable: {type(exc).__name__}: {exc}", UNAVAILABLE_RETRY_DELAY
    )


@contextlib.asynccontextmanager
async def _lost_as_unavailable(conn: Any) -> AsyncIterator[None]:
    """A connection that dies between two statements (e.g. inside a transaction) surfaces as an
    InterfaceError once the pool has taken it back; checked while we still hold it, so that
    misuse errors on a healthy connection stay what they are."""
    try:
        yield
    except asyncpg.InterfaceError as exc:
        try:
            lost = conn.is_closed()
        except asyncpg.InterfaceError:
            lost = True  # the pool reclaimed it: it is dead
        if lost:
            raise _unavailable(exc) from exc
        raise


def _appended(row: asyncpg.Record) -> Appended:
    return Appended(
        row["event_id"], row["stream_version"], row["global_position"], row["duplicate"]
    )


def _record(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        id=row["event_id"],
        stream=row["stream_name"],
        version=row["stream_version"],
        position=Position(int(row["txid"]), row["global_position"]),
        type=row["type"],
        data=row["data"],
        metadata=row["metadata"],
        recorded_at=row["recorded_at"],
    )


class PostgresEventStore:
    """Bound either to a pool (each call its own transaction) or to one connection."""

    def __init__(self, pool: asyncpg.Pool | None = None, conn: Any = None) -> None:
        self._pool = pool
        self._conn = conn

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        try:
            if self._conn is not None:
                async with _lost_as_unavailable(self._conn):
                    yield self._conn
            else:
                assert self._pool is not None
                async with self._pool.acquire() as conn, _lost_as_unavailable(conn):
                    yield conn
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresEventStore]:
        async with self._connection() as conn, conn.transaction():
            yield PostgresEventStore(conn=conn)

    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]:
        if not events:
            return []
        rows = await self._write(
            category(stream),
            len(events),
            "SELECT * FROM append_to_stream($1, $2, $3, $4, $5, $6)",
            stream,
            expected_version,
            [e.id for e in events],
            [e.type for e in events],
            [e.data for e in events],
            [e.metadata for e in events],
        )
        return [_appended(r) for r in rows]

    async def append_batch(self, writes: list[StreamWrite]) -> list[list[Appended]]:
        results: list[list[Appended]] = [[] for _ in writes]
        writes_ = [(i, w) for i, w in enumerate(writes) if w.events]
        if not writes_:
            return results
        events = [e for _, w in writes_ for e in w.events]
        rows = await self._write(
            ",".join(sorted({category(w.stream) for _, w in writes_})),
            len(events),
            "SELECT * FROM append_to_streams($1, $2, $3, $4, $5, $6, $7)",
            [w.stream for _, w in writes_],
            [w.expected_version for _, w in writes_],
            [len(w.events) for _, w in writes_],
            [e.id for e in events],
            [e.type for e in events],
            [e.data for e in events],
            [e.metadata for e in events],
        )
        for r in rows:
            results[writes_[r["stream_index"] - 1][0]].append(_appended(r))
        return results

    async def _write(self, categories: str, count: int, sql: str, *args: Any) -> list[Any]:
        started = time.perf_counter()
        # The category only: a stream id can hold a customer's phone number.
        with tracing.span(
            "eventstore append",
            SpanKind.CLIENT,
            **{
                "db.system": "postgresql",
                "eventstore.category": categories,
                "eventstore.events": count,
            },
        ):
            try:
                async with self._connection() as conn:
                    return list(await conn.fetch(sql, *args))
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) == "ES409":
                    metrics.eventstore_conflicts.inc()
                    raise WrongExpectedVersion(str(exc)) from exc
                raise
            finally:
                metrics.eventstore_append_duration.observe(time.perf_counter() - started)

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events WHERE stream_name = $1 AND stream_version >= $2"
                " ORDER BY stream_version",
                stream,
                from_version,
            )
        return [_record(r) for r in rows]

    async def read_all(self, after: Position = START, limit: int = 1000) -> list[RecordedEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events"
                " WHERE (transaction_id, global_position) > ($1::text::xid8, $2)"
                "   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
                " ORDER BY transaction_id, global_position LIMIT $3",
                str(after.transaction_id),
                after.global_position,
                limit,
            )
        return [_record(r) for r in rows]

    async def find(self, event_id: uuid.UUID) -> RecordedEvent | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM events WHERE event_id = $1", event_id
            )
        return _record(row) if row else None
