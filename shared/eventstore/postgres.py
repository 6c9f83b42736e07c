"""PostgreSQL event store (asyncpg)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from opentelemetry.trace import SpanKind

from shared.eventstore import (
    ANY,
    START,
    Appended,
    EventRejected,
    NewEvent,
    Position,
    RecordedEvent,
    StoreUnavailable,
    StreamWrite,
    WrongExpectedVersion,
    category,
    check_stream_name,
)
from shared.eventstore.coalesce import Coalescer
from shared.eventstore.mapper import Mapper, default_mapper
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
    # A DATABASE_URL of several hosts (target_session_attrs=read-write) while none takes
    # writes: a fail-over under way, the replica not promoted yet.
    asyncpg.exceptions.TargetServerAttributeNotMatched,
    # The server's (or the role's) connection limit is reached: other clients are holding
    # them. Nothing wrong with the message, so wait and retry rather than dead-letter it.
    asyncpg.TooManyConnectionsError,
)
UNAVAILABLE_RETRY_DELAY = 0.5
COMMAND_TIMEOUT = 30.0


class StatementTimeout(Exception):
    """One statement took longer than COMMAND_TIMEOUT on a healthy connection."""


# read_all's rule, for every reader of the whole log: after ($1, $2), only rows older than
# every open transaction (none that commits later is ever passed), in order, $3 at most.
_IN_ORDER = (
    " WHERE (transaction_id, global_position) > ($1::text::xid8, $2)"
    "   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    " ORDER BY transaction_id, global_position LIMIT $3"
)

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


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 10, command_timeout: float = COMMAND_TIMEOUT
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=keep_session,
        command_timeout=command_timeout,
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
    except asyncpg.InternalClientError as exc:
        # The server went away mid-statement and left the protocol in a state no statement
        # can run from ("cannot switch to state 12; another operation (2) is in progress",
        # seen while PostgreSQL shut down): an outage, not the message's problem, and this
        # connection is done for, so the pool must not hand it out again.
        conn.terminate()
        raise _unavailable(exc) from exc


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool | None, conn: Any = None) -> AsyncIterator[Any]:
    """The given connection, or one from the pool, with failures sorted as the bus needs them:
    the server away is StoreUnavailable (wait, then retry), a statement out of time on a live
    connection is StatementTimeout (this message's own problem). For every reader of the
    database, not only the store: a raw connection error would count against the message."""
    connected = False
    try:
        if conn is not None:
            async with _lost_as_unavailable(conn):
                connected = True
                yield conn
        else:
            assert pool is not None
            async with pool.acquire() as pooled, _lost_as_unavailable(pooled):
                connected = True
                yield pooled
    except TimeoutError as exc:
        if connected:
            # The statement ran out of time on a live connection: this message's own
            # work is too big or too slow, which waiting will not fix (it is counted and
            # dead-lettered after its attempts). Connecting that times out is an outage.
            metrics.eventstore_statement_timeouts.inc()
            raise StatementTimeout("a statement ran out of time") from exc
        raise _unavailable(exc) from exc
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc


def _appended(row: asyncpg.Record) -> Appended:
    return Appended(
        row["event_id"], row["stream_version"], row["global_position"], row["duplicate"]
    )


@dataclass(frozen=True)
class Encoded:
    """A stream's write as the append functions take it: ids, types, data (sealed) and
    metadata, column by column."""

    stream: str
    expected_version: int | None
    columns: list[list[Any]]


@dataclass(frozen=True)
class Scan:
    """What `read_all_of` read: the events of the types asked for, the position of the last
    row looked at (None: nothing new), when the first was recorded, and how many rows."""

    events: list[RecordedEvent]
    through: Position | None
    oldest: datetime | None
    scanned: int


class PostgresEventStore:
    """Bound either to a pool (each call its own transaction) or to one connection."""

    def __init__(
        self,
        pool: asyncpg.Pool | None = None,
        conn: Any = None,
        mapper: Mapper | None = None,
        coalesce: bool = True,
    ) -> None:
        """`coalesce`: a pool-bound store sends the appends made at the same moment in one
        statement (group commit, shared/eventstore/coalesce.py). A store bound to one
        connection writes in its transaction, as it is asked."""
        self._pool = pool
        self._conn = conn
        self.mapper = mapper or default_mapper()
        self._coalescer = Coalescer(self._write_encoded) if coalesce and conn is None else None

    def _record(self, row: asyncpg.Record) -> RecordedEvent:
        stream = row["stream_name"]
        return RecordedEvent(
            id=row["event_id"],
            stream=stream,
            version=row["stream_version"],
            position=Position(int(row["txid"]), row["global_position"]),
            event=self.mapper.to_event(stream, row["type"], row["data"], row["metadata"]),
            metadata=row["metadata"],
            recorded_at=row["recorded_at"],
        )

    def _rows(self, stream: str, events: list[NewEvent]) -> list[list[Any]]:
        """The events as the append functions take them: ids, types, data, metadata."""
        ids, types, data, metadata = [], [], [], []
        for new in events:
            type_, d, meta = self.mapper.to_row(stream, new)
            ids.append(new.id)
            types.append(type_)
            data.append(d)
            metadata.append(meta)
        return [ids, types, data, metadata]

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return connection(self._pool, self._conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresEventStore]:
        async with self._connection() as conn, conn.transaction():
            yield PostgresEventStore(conn=conn, mapper=self.mapper)

    async def transaction_id(self) -> int:
        """The id of the transaction this store is bound to (inside `transaction()`): with
        an appended event's global position, the write's place in read_all's order, which a
        caller waits for a subscription to pass (read your writes). Asking assigns the id."""
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT pg_current_xact_id()::text"))

    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]:
        if not events:
            return []
        check_stream_name(stream)
        await self._keys_for_writing([(stream, events)])
        # Sealed here, with the keys just checked: a caller's own refusal (an erased
        # customer, an event that does not fit) is its own, never its statement's.
        encoded = self._encoded(StreamWrite(stream, events, expected_version))
        if self._coalescer is not None:
            [appended] = await self._coalescer.submit([encoded])
            return appended
        rows = await self._write(
            category(stream),
            len(events),
            "SELECT * FROM append_to_stream($1, $2, $3, $4, $5, $6)",
            stream,
            expected_version,
            *encoded.columns,
        )
        return [_appended(r) for r in rows]

    async def append_batch(self, writes: list[StreamWrite]) -> list[list[Appended]]:
        results: list[list[Appended]] = [[] for _ in writes]
        writes_ = [(i, w) for i, w in enumerate(writes) if w.events]
        if not writes_:
            return results
        for _, w in writes_:
            check_stream_name(w.stream)
        await self._keys_for_writing([(w.stream, w.events) for _, w in writes_])
        encoded = [self._encoded(w) for _, w in writes_]
        if self._coalescer is not None:
            written = await self._coalescer.submit(encoded)
        else:
            written = await self._write_encoded(encoded)
        for (i, _), appended in zip(writes_, written, strict=True):
            results[i] = appended
        return results

    def _encoded(self, write: StreamWrite) -> Encoded:
        return Encoded(write.stream, write.expected_version, self._rows(write.stream, write.events))

    async def _write_encoded(self, writes: list[Encoded]) -> list[list[Appended]]:
        """These writes (sealed, none empty) in one statement: what each appended."""
        results: list[list[Appended]] = [[] for _ in writes]
        columns: list[list[Any]] = [[], [], [], []]
        for w in writes:
            for column, values in zip(columns, w.columns, strict=True):
                column.extend(values)
        rows = await self._write(
            ",".join(sorted({category(w.stream) for w in writes})),
            sum(len(w.columns[0]) for w in writes),
            "SELECT * FROM append_to_streams($1, $2, $3, $4, $5, $6, $7)",
            [w.stream for w in writes],
            [w.expected_version for w in writes],
            [len(w.columns[0]) for w in writes],
            *columns,
        )
        for r in rows:
            results[r["stream_index"] - 1].append(_appended(r))
        return results

    async def _keys_for_writing(self, writes: list[tuple[str, list[NewEvent]]]) -> None:
        """Customers' data keys that these events are sealed with, made if new (a cipher is
        installed). Made on the store's connection: inside its transaction, if it has one."""
        key_ids = self.mapper.keys_to_write(writes)
        if key_ids:
            async with self._connection() as conn:
                await self.mapper.load_keys(conn, key_ids, create=True)

    async def _records(self, conn: Any, rows: list[asyncpg.Record]) -> list[RecordedEvent]:
        await self.mapper.load_keys(conn, self.mapper.keys_to_read(rows), create=False)
        return [self._record(r) for r in rows]

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
                state = str(getattr(exc, "sqlstate", "") or "")
                if state == "ES409":
                    metrics.eventstore_conflicts.inc()
                    raise WrongExpectedVersion(str(exc)) from exc
                if state[:2] in ("22", "54"):  # data exception, program limit exceeded
                    raise EventRejected(f"{type(exc).__name__}: {exc}") from exc
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
            return await self._records(conn, rows)

    async def read_streams(self, streams: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        wanted = list(dict.fromkeys(streams))
        out: dict[str, list[RecordedEvent]] = {stream: [] for stream in wanted}
        if not wanted:
            return out
        async with self._connection() as conn:
            # One index probe per stream, whatever the statistics say: as `stream_name =
            # ANY($1)`, a generic plan made while the log was a few pages stayed a scan of
            # the whole log as it grew (tests/integration/test_stale_plans.py).
            rows = await conn.fetch(
                "SELECT e.* FROM unnest($1::text[]) AS s(name) CROSS JOIN LATERAL"
                f" (SELECT {_COLUMNS} FROM events WHERE stream_name = s.name"
                " ORDER BY stream_version) e",
                wanted,
            )
            for recorded in await self._records(conn, rows):
                out[recorded.stream].append(recorded)
        return out

    async def read_all(self, after: Position = START, limit: int = 1000) -> list[RecordedEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events{_IN_ORDER}",
                str(after.transaction_id),
                after.global_position,
                limit,
            )
            return await self._records(conn, rows)

    async def read_all_of(
        self, types: Sequence[str], after: Position = START, limit: int = 1000
    ) -> Scan:
        """The log's next `limit` rows after `after`, in read_all's order and with its
        horizon, of which only those of these types are opened: a reader of a few types
        moves past the rest without receiving or decoding their data (or loading their
        keys)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT event_id, stream_name, stream_version, global_position,"
                " transaction_id::text AS txid, type, recorded_at,"
                " type = ANY($4::text[]) AS wanted,"
                " CASE WHEN type = ANY($4::text[]) THEN data END AS data,"
                " CASE WHEN type = ANY($4::text[]) THEN metadata END AS metadata"
                f" FROM events{_IN_ORDER}",
                str(after.transaction_id),
                after.global_position,
                limit,
                list(types),
            )
            if not rows:
                return Scan([], None, None, 0)
            last = rows[-1]
            return Scan(
                await self._records(conn, [r for r in rows if r["wanted"]]),
                Position(int(last["txid"]), last["global_position"]),
                rows[0]["recorded_at"],
                len(rows),
            )

    async def read_category(
        self, category: str, after: Position = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM read_category($1, $2::text::xid8, $3, $4)",
                category,
                str(after.transaction_id),
                after.global_position,
                limit,
            )
            return await self._records(conn, rows)

    async def read_after(
        self, after: int = 0, types: list[str] | None = None, limit: int = 10_000
    ) -> list[RecordedEvent]:
        """Events past a global position, of these types (None: all), in position order:
        for tools and tests that look for what was recorded, through the mapper (the data
        is sealed in the table), never the subscriptions' ordered read (`read_all`)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events WHERE global_position > $1"
                "   AND ($2::text[] IS NULL OR type = ANY($2::text[]))"
                " ORDER BY global_position LIMIT $3",
                after,
                types,
                limit,
            )
            return await self._records(conn, rows)

    async def find(self, event_id: uuid.UUID) -> RecordedEvent | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM events WHERE event_id = $1", event_id
            )
            return (await self._records(conn, [row]))[0] if row else None
