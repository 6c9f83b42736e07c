"""In-memory event store: the fake that handler tests run against (same contract tests).

It keeps rows (type, data, metadata) exactly as the PostgreSQL store does and maps them
through the same Mapper on every read, so a handler test exercises the real mapping."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from shared.eventstore import (
    ANY,
    START,
    Appended,
    NewEvent,
    Position,
    RecordedEvent,
    StreamWrite,
    WrongExpectedVersion,
    check_stream_name,
)
from shared.eventstore import category as category_of
from shared.eventstore.mapper import Mapper, default_mapper


class _Row(NamedTuple):
    id: uuid.UUID
    stream: str
    version: int
    position: Position
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


class InMemoryEventStore:
    def __init__(self, mapper: Mapper | None = None) -> None:
        self.mapper = mapper or default_mapper()
        self._rows: list[_Row] = []
        self._by_id: dict[uuid.UUID, _Row] = {}
        self._streams: dict[str, list[_Row]] = {}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[InMemoryEventStore]:
        # Snapshot and restore on error: all-or-nothing like the database.
        saved = (
            list(self._rows),
            dict(self._by_id),
            {k: list(v) for k, v in self._streams.items()},
        )
        try:
            yield self
        except BaseException:
            self._rows, self._by_id, self._streams = saved
            raise

    def _recorded(self, row: _Row) -> RecordedEvent:
        return RecordedEvent(
            id=row.id,
            stream=row.stream,
            version=row.version,
            position=row.position,
            event=self.mapper.to_event(row.stream, row.type, copy.deepcopy(row.data), row.metadata),
            metadata=copy.deepcopy(row.metadata),
            recorded_at=row.recorded_at,
        )

    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]:
        check_stream_name(stream)
        existing = self._streams.setdefault(stream, [])
        current = len(existing) - 1
        known = sum(1 for e in events if e.id in self._by_id)
        if expected_version is not None and known < len(events) and current != expected_version:
            raise WrongExpectedVersion(
                f"stream {stream} is at version {current}, expected {expected_version}"
            )
        out: list[Appended] = []
        for new in events:
            if new.id in self._by_id:
                old = self._by_id[new.id]
                out.append(Appended(new.id, old.version, old.position.global_position, True))
                continue
            type_, data, metadata = self.mapper.to_row(stream, new)
            current += 1
            position = len(self._rows) + 1
            row = _Row(
                new.id,
                stream,
                current,
                Position(position, position),
                type_,
                copy.deepcopy(data),
                copy.deepcopy(metadata),
                datetime.now(UTC),
            )
            self._rows.append(row)
            self._by_id[new.id] = row
            existing.append(row)
            out.append(Appended(new.id, current, position, False))
        return out

    async def append_batch(self, writes: list[StreamWrite]) -> list[list[Appended]]:
        async with self.transaction() as tx:
            return [await tx.append(*write) for write in writes]

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        return [
            self._recorded(r) for r in self._streams.get(stream, []) if r.version >= from_version
        ]

    async def read_streams(self, streams: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        return {stream: await self.read_stream(stream) for stream in streams}

    async def read_all(self, after: Position = START, limit: int = 1000) -> list[RecordedEvent]:
        return [self._recorded(r) for r in self._rows if r.position > after][:limit]

    async def read_category(
        self, category: str, after: Position = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        return [
            self._recorded(r)
            for r in self._rows
            if category_of(r.stream) == category and r.position > after
        ][:limit]

    async def find(self, event_id: uuid.UUID) -> RecordedEvent | None:
        row = self._by_id.get(event_id)
        return self._recorded(row) if row else None
