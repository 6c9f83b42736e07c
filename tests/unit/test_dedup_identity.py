"""Dedup's identities (services/dedup/identity.py) with the in-memory store: the ids a
customer's first message carries are read together and linked in one commit, and a link
another process made meanwhile still wins."""

from __future__ import annotations

from typing import Any

from services.dedup.identity import Identities
from shared.eventstore.memory import InMemoryEventStore


class Counting(InMemoryEventStore):
    """Counts the calls that are round trips on PostgreSQL; with `stale`, its reads of
    several streams answer as if made before anything was linked (a process that read just
    before another one's commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.stale = False
        self._batching = False  # the in-memory append_batch appends one write at a time

    async def read_stream(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("read_stream")
        return await super().read_stream(*args, **kwargs)

    async def read_streams(self, streams: Any) -> Any:
        self.calls.append("read_streams")
        if self.stale:
            return {s: [] for s in streams}
        return {s: await super(Counting, self).read_stream(s) for s in streams}

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        if not self._batching:
            self.calls.append("append")
        return await super().append(*args, **kwargs)

    async def append_batch(self, writes: Any) -> Any:
        self.calls.append("append_batch")
        self._batching = True
        try:
            return await super().append_batch(writes)
        finally:
            self._batching = False


def links(store: InMemoryEventStore) -> dict[str, list[str]]:
    """Each id's links: the customer keys it was linked to."""
    out: dict[str, list[str]] = {}
    for row in store._rows:
        if row.type == "IdentityLinked":
            out.setdefault(row.data["id"], []).append(row.data["customer"])
    return out


async def test_a_new_customers_ids_are_read_in_one_call_and_linked_in_one_commit() -> None:
    store = Counting()
    customer = await Identities(store).key("biz", "393331112222", "US.1")
    assert store.calls == ["read_streams", "append_batch"]
    assert links(store) == {"393331112222": [customer.key], "US.1": [customer.key]}
    # Another process (nothing cached) knows them by either id, from one read.
    store.calls.clear()
    assert await Identities(store).key("biz", "", "US.1") == customer
    assert await Identities(store).key("biz", "393331112222", "") == customer
    assert store.calls == ["read_streams", "read_streams"]
    # Known to this process: nothing read at all.
    mine = Identities(store)
    await mine.key("biz", "393331112222", "US.1")
    store.calls.clear()
    assert await mine.key("biz", "393331112222", "US.1") == customer
    assert store.calls == []


async def test_a_link_made_elsewhere_after_the_read_wins_and_nothing_is_half_written() -> None:
    store = Counting()
    theirs = await Identities(store).key("biz", "", "US.2")  # another process, first
    store.stale, store.calls = True, []
    mine = await Identities(store).key("biz", "393334445555", "US.2")
    # The joint commit was refused whole; one by one, the number is linked to the key it
    # makes and the user id keeps the other process's link.
    assert store.calls == ["read_streams", "append_batch", "append", "append", "read_stream"]
    assert links(store) == {"US.2": [theirs.key], "393334445555": [mine.key]}
    assert mine.key != theirs.key
