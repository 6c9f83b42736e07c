"""Typed events to rows and back, in one place.

Appending: the Struct becomes the row's `type` (its class name) and `data` (its fields), and
the metadata records the shape's `schema_version`. Reading: the row's data is brought up to
the current shape by the upcasters registered for its type (one per version step), then
converted into the Struct. A cipher plugs in between the Struct and the row: with one
installed (`install_cipher`, done by the runtime when PRIVACY_ENCRYPTION is on), the data of
every event about a customer is sealed with that customer's data key
(`shared/crypto/personal.py`), and a row whose key was destroyed reads as `Erased`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, NamedTuple, Protocol

import msgspec

from shared.errors import PermanentError
from shared.eventstore import (
    Erased,
    Event,
    EventRejected,
    NewEvent,
    Undecodable,
    Unrecognised,
)
from shared.observability import metrics

log = logging.getLogger("eventstore")

SCHEMA_KEY = "schema_version"


class Upcaster(NamedTuple):
    """Turns `type`'s data written under `from_version` into the shape of the next version."""

    type: str
    from_version: int
    upcast: Callable[[dict[str, Any]], dict[str, Any]]


class Cipher(Protocol):
    """Encrypts what is personal in an event's data before it is stored, and back. `decrypt`
    raises `ErasedData` (shared/crypto/personal.py) for a row whose key is destroyed."""

    def encrypt(self, stream: str, type_: str, data: dict[str, Any]) -> dict[str, Any]: ...

    def decrypt(self, stream: str, type_: str, data: dict[str, Any]) -> dict[str, Any]: ...


class KeyedCipher(Cipher, Protocol):
    """A cipher whose keys live in the database: the store loads them (one query for a
    statement's rows) before the mapper's synchronous calls need them."""

    def key_id_for(self, stream: str, data: dict[str, Any]) -> str | None: ...

    async def load(self, conn: Any, key_ids: set[str], create: bool) -> None: ...


class UndecodableEvent(PermanentError):
    """Raised by `decode` for a row that does not fit its type."""


class Mapper:
    def __init__(
        self,
        types: Iterable[type[Event]],
        upcasters: Iterable[Upcaster] = (),
        cipher: Cipher | None = None,
    ) -> None:
        self.types: dict[str, type[Event]] = {}
        for cls in types:
            name = cls.type_name()
            if name in self.types and self.types[name] is not cls:
                raise ValueError(f"two event types are named {name}")
            self.types[name] = cls
        self.upcasters = {(u.type, u.from_version): u.upcast for u in upcasters}
        self.cipher = cipher

    def to_row(self, stream: str, new: NewEvent) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(type, data, metadata) of the row that stores `new`."""
        event = new.event
        if isinstance(event, Unrecognised):
            return event.type, event.data, new.metadata
        type_ = type(event).__name__
        if type_ not in self.types:
            raise ValueError(f"{type_} is not a registered event type")
        data: dict[str, Any] = msgspec.to_builtins(event)
        # A Struct built from outside data may hold what its fields do not (a string where a
        # list goes): refused here, as the store refuses a value it cannot hold, rather
        # than stored as a row its readers cannot decode.
        try:
            msgspec.convert(data, type(event))
        except msgspec.ValidationError as exc:
            raise EventRejected(f"{type_} does not fit its type: {exc}") from exc
        if self.cipher is not None:
            data = self.cipher.encrypt(stream, type_, data)
        return type_, data, {**new.metadata, SCHEMA_KEY: type(event).schema}

    def to_event(
        self, stream: str, type_: str, data: dict[str, Any], metadata: dict[str, Any]
    ) -> Event:
        """The typed event; Undecodable (logged and counted) for a row that does not fit."""
        try:
            return self.decode(stream, type_, data, metadata)
        except UndecodableEvent as exc:
            metrics.eventstore_undecodable.labels(type_).inc()
            # The category only: a stream id can hold a customer's phone number.
            log.error(
                "stored event does not fit its type",
                extra={"fields": {"type": type_, "category": stream.split("-", 1)[0]}},
            )
            return Undecodable(type=type_, data=data, error=str(exc))

    def decode(
        self, stream: str, type_: str, data: dict[str, Any], metadata: dict[str, Any]
    ) -> Event:
        cls = self.types.get(type_)
        if cls is None:
            return Unrecognised(type=type_, data=data)
        if data.get("_k") == "erased" and len(data) == 2:
            return Erased(type=type_, data={})  # emptied by an erasure, sealed or not
        if self.cipher is not None:
            from shared.crypto.personal import ErasedData

            try:
                data = self.cipher.decrypt(stream, type_, data)
            except ErasedData:
                return Erased(type=type_, data={})
            except ValueError as exc:
                raise UndecodableEvent(f"{type_} does not open: {exc}") from exc
        version = int(metadata.get(SCHEMA_KEY, 1))
        while version < cls.schema:
            upcast = self.upcasters.get((type_, version))
            if upcast is None:
                raise UndecodableEvent(f"{type_} has no upcaster from schema {version}")
            data = upcast(data)
            version += 1
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise UndecodableEvent(f"{type_} does not fit its type: {exc}") from exc

    # --- keys, for a cipher that keeps them in the database -----------------------------------

    def keys_to_write(self, writes: Iterable[tuple[str, list[NewEvent]]]) -> set[str]:
        """The key ids that appending these events will seal with."""
        key_id_for = getattr(self.cipher, "key_id_for", None)
        if key_id_for is None:
            return set()
        found: set[str] = set()
        for stream, events in writes:
            for new in events:
                if isinstance(new.event, Unrecognised):
                    continue
                key_id = key_id_for(stream, msgspec.to_builtins(new.event))
                if key_id is not None:
                    found.add(key_id)
        return found

    def keys_to_read(self, rows: Iterable[Any]) -> set[str]:
        """The key ids these stored rows (with a `data` column) are sealed under."""
        if getattr(self.cipher, "key_id_for", None) is None:
            return set()
        from shared.crypto.personal import key_id_of

        found = {key_id_of(row["data"]) for row in rows}
        found.discard(None)
        return found  # type: ignore[return-value]

    async def load_keys(self, conn: Any, key_ids: set[str], create: bool) -> None:
        if key_ids and self.cipher is not None:
            await self.cipher.load(conn, key_ids, create)  # type: ignore[attr-defined]


_installed: Cipher | None = None


def install_cipher(cipher: Cipher | None) -> None:
    """Seal customers' data in every store of this process from now on (None: stop)."""
    global _installed
    _installed = cipher
    default_mapper.cache_clear()


@cache
def default_mapper() -> Mapper:
    """Every event type the services write, with their upcasters (`shared/events`), and
    the cipher installed in this process, if any."""
    from shared import events

    return Mapper(events.ALL, events.UPCASTERS, cipher=_installed)
