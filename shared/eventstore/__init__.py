"""The event store: append to a stream with an expected version, read a stream, read all.

Stream names are `category-id` (message-db's convention), e.g. `inbox-<phone>.<customer>`.
Event ids are idempotency keys: appending an id that is already stored is a no-op reported as
a duplicate, which is how consumers stay idempotent across redeliveries.

Events are typed: every event type is an `Event` Struct (`shared/events/`, one module per
writing service), and the store maps them to rows and back through one `Mapper`
(`shared/eventstore/mapper.py`), where schema versions, upcasters and a cipher plug in.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, NamedTuple, Protocol

import msgspec

from shared.errors import RetryLater

ANY: int | None = None
NO_STREAM = -1

# Namespace for deterministic event ids (uuid5 of a natural key such as a wamid).
EVENT_NAMESPACE = uuid.UUID("5d6f3c0e-2b1a-4c39-9a57-0d7f6b1d2e11")


def category(stream: str) -> str:
    """`inbox-123.456` -> `inbox`."""
    return stream.split("-", 1)[0]


def stream_id(stream: str) -> str:
    """`inbox-123.456` -> `123.456`."""
    return stream.split("-", 1)[1] if "-" in stream else stream


def event_id_for(*key: str) -> uuid.UUID:
    """Deterministic event id for a natural key: the same input always gives the same id."""
    return uuid.uuid5(EVENT_NAMESPACE, "\x1f".join(key))


class WrongExpectedVersion(Exception):
    """Another writer appended to the stream first (optimistic concurrency)."""


# Longer stream names are refused: they name an index key, whose size PostgreSQL limits.
MAX_STREAM_NAME = 1000


class EventRejected(Exception):
    """The store refused the events themselves (a stream name too long, a value it cannot
    hold): writing the same thing again cannot succeed, so it is not an outage."""


def check_stream_name(stream: str) -> None:
    if len(stream.encode()) > MAX_STREAM_NAME:
        raise EventRejected(f"stream name over {MAX_STREAM_NAME} bytes")


class StoreUnavailable(RetryLater):
    """The database cannot be reached (restarting, down, connection lost). Says nothing about
    the message being handled, so consumers hold its lane and retry, uncounted, rather than
    spending its attempts and dead-lettering it."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every stored event. The class name is the stored `type` (today's names, so
    stored rows and operators' queries keep working); the fields are the row's `data`.
    `schema` is the version of the data's shape: a row written under an older one is
    brought up to date by the mapper's upcasters before it becomes a Struct."""

    schema: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__


class Unrecognised(Event, frozen=True):
    """A stored row whose type no module declares (written by a newer version, or a type
    since retired): readers of the whole log see it and skip it rather than fail."""

    type: str
    data: dict[str, Any]


class Undecodable(Unrecognised, frozen=True):
    """A stored row of a known type that does not fit its Struct, even upcast (a bug, or a
    hand-edited row): `error` says why. Readers skip it (folds) or give up what it stood
    for (a customer message), so one bad row never stops a stream or a subscription."""

    error: str


class Erased(Unrecognised, frozen=True):
    """A stored row whose customer was erased: its data key is destroyed, so nothing of it
    can be read (`data` is empty). Readers skip it like any row they do not know; one that
    meets it where it expected a customer's message knows that message is gone for good."""


class NewEvent(msgspec.Struct, frozen=True):
    """An event about to be appended: the typed event, its id (an idempotency key) and
    metadata (correlation, causation, trace)."""

    event: Event
    id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    metadata: dict[str, Any] = {}

    @property
    def type(self) -> str:
        return _type_of(self.event)

    def with_metadata(self, metadata: dict[str, Any]) -> NewEvent:
        return NewEvent(self.event, self.id, {**metadata, **self.metadata})


def new(event: Event, *key: str, metadata: dict[str, Any] | None = None) -> NewEvent:
    """`event` with an id derived from `key` (its natural key), or a random id without one."""
    return NewEvent(event, event_id_for(*key) if key else uuid.uuid4(), metadata or {})


def _type_of(event: Event) -> str:
    return event.type if isinstance(event, Unrecognised) else type(event).__name__


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
    """An event as stored: the typed event plus where and when it was recorded."""

    id: uuid.UUID
    stream: str
    version: int
    position: Position
    event: Event
    metadata: dict[str, Any]
    recorded_at: datetime

    @property
    def type(self) -> str:
        return _type_of(self.event)


class EventStore(Protocol):
    async def append(
        self, stream: str, events: list[NewEvent], expected_version: int | None = ANY
    ) -> list[Appended]: ...

    async def append_batch(self, writes: list[StreamWrite]) -> list[list[Appended]]:
        """Append to several streams all or nothing (one round trip on PostgreSQL); the
        result has one list per write, in order. Each write's expected version is checked."""
        ...

    async def read_stream(self, stream: str, from_version: int = 0) -> list[RecordedEvent]: ...

    async def read_streams(self, streams: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        """Several whole streams at once (one round trip on PostgreSQL): each one asked
        for is a key, an empty list when it has no events."""
        ...

    async def read_all(self, after: Position = START, limit: int = 1000) -> list[RecordedEvent]: ...

    async def read_category(
        self, category: str, after: Position = START, limit: int = 1000
    ) -> list[RecordedEvent]:
        """read_all restricted to the streams `category-*` (and a stream named `category`):
        the same order and positions, the same rule against passing a later commit."""
        ...

    async def find(self, event_id: uuid.UUID) -> RecordedEvent | None: ...

    def transaction(self) -> Any:
        """Async context manager giving an EventStore whose appends commit together."""
        ...
