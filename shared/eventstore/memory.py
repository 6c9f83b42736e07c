"""In-memory event store: the fake that handler tests run against (same contract tests)."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from shared.eventstore import (
    ANY,
    START,
    Appended,
    NewEvent,
    Position,
    RecordedEvent,
    StreamWrite,
    WrongExpectedVersion,
)


class InMemoryEventStore:
    def __init__(self) -> None:
        self._events: list[RecordedEvent] = []
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._streams: dict[str, list[RecordedEvent]] = {}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[InMemoryEventStore]:
        # Snapshot and restore on error: all-or-nothing like the database.
        saved = (list(self._events), dict(self._by_id), copy.copy(self._streams))
        saved_streams = {k: list(v) for k, v in self._streams.items()}
        try:
            yield self
        except BaseException:
            self._events, self._by_id, _ = saved
            self._streams = saved_streams
            raise

    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]:
        existing = self._streams.setdefault(stream, [])
        current = len(existing) - 1
        known = sum(1 for e in events if e.id in self._by_id)
        if expected_version is not None and known < len(events) and current != expected_version:
            raise WrongExpectedVersion(
                f"stream {stream} is at version {current}, expected {expected_version}"
            )
        out: list[Appended] = []
        for event in events:
            if event.id in self._by_id:
                old = self._by_id[event.id]
                out.append(Appended(event.id, old.version, old.position.global_position, True))
                continue
            current += 1
            position = len(self._events) + 1
            recorded = RecordedEvent(
                id=event.id,
                stream=stream,
                version=current,
                position=Position(position, position),
                type=event.type,
                data=copy.deepcopy(event.data),
                metadata=copy.deepcopy(event.metadata),
                recorded_at=datetime.now(UTC),
            )
            self._events.append(recorded)
            self._by_id[event.id] = recorded
            existing.append(recorded)
            out.append(Appended(event.id, current, position, False))
        return out

    async def append_batch(self, writes: list[StreamWrite]) -> list[list[Appended]]:
        async with self.transaction() as tx:
            return [await tx.append(*write) for write in writes]

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]:
        return [e for e in self._streams.get(stream, []) if e.version >= from_version]

    async def read_all(self, after: Position = START, limit: int = 1000) -> list[RecordedEvent]:
        return [e for e in self._events if e.position > after][:limit]

    async def find(self, event_id: uuid.UUID) -> RecordedEvent | None:
        return self._by_id.get(event_id)
