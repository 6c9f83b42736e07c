"""The event store: append to a stream with an expected version, read a stream, read all.

Stream names are `category-id` (message-db's convention), e.g. `inbox-<phone>.<customer>`.
Event ids are idempotency keys: appending an id that is already stored is a no-op reported as
a duplicate, which is how consumers stay idempotent across redeliveries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import msgspec

from shared.errors import RetryLater

ANY: int | None = None
NO_STREAM = -1

# Namespace for deterministic event ids (uuid5 of a natural key such as a wamid).
EVENT_NAMESPACE = uuid.UUID("5d6f3c0e-2b1a-4c39-9a57-0d7f6b1d2e11")


def category(stream: str) -> str:
    """`inbox-123.456` -> `inbox`."""
    return stream.split("-", 1)[0]


def event_id_for(*key: str) -> uuid.UUID:
    """Deterministic event id for a natural key: the same input always gives the same id."""
    return uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(key))


class WrongExpectedVersion(Exception):
    """Another writer appended to the stream first (optimistic concurrency)."""


class StoreUnavailable(RetryLater):
    """The database cannot be reached (restarting, down, connection lost). Says nothing about
    the message being handled, so consumers hold its lane and retry, uncounted, rather than
    spending its attempts and dead-lettering it."""


class NewEvent(msgspec.Struct, frozen=True):
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = {}
    id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)


class Appended(NamedTuple):
    event_id: uuid.UUID
    stream_version: int
    global_position: int
    duplicate: bool


class StreamWrite(NamedTuple):
    """One stream's part of an atomic append to several streams (`append_batch`)."""

    stream: str
    events: list[NewEvent]
    expected_version: int | None = ANY


class Position(NamedTuple):
    """A place in the global log: (transaction id, global position), compared as a tuple."""

    transaction_id: int
    global_position: int


START = Position(0, 0)


class RecordedEvent(msgspec.Struct, frozen=True):
    id: uuid.UUID
    stream: str
    version: int
    position: Position
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


class EventStore(Protocol):
    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]: ...

    async def append_batch(self, writes: list[StreamWrite]) -> list[list[Appended]]:
        """Append to several streams all or nothing (one round trip on PostgreSQL); the
        result has one list per write, in order. Each write's expected version is checked."""
        ...

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]: ...

    async def read_all(self, after: Position = START, limit: int = 1000) -> list[RecordedEvent]: ...

    async def find(self, event_id: uuid.UUID) -> RecordedEvent | None: ...

    def transaction(self) -> Any:
        """Async context manager giving an EventStore whose appends commit together."""
        ...
