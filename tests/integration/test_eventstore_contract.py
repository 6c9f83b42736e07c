"""The event store contract, run against every backend.

Handler tests use InMemoryEventStore, so it must behave like PostgresEventStore; the same
cases run against both. The database is shared by the session: every test uses fresh,
uuid-named streams and only asserts about its own events in the global log.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from shared.eventstore import (
    ANY,
    NO_STREAM,
    START,
    EventRejected,
    EventStore,
    NewEvent,
    Position,
    RecordedEvent,
    StoreUnavailable,
    StreamWrite,
    Unrecognised,
    WrongExpectedVersion,
)
from shared.eventstore.memory import InMemoryEventStore
from shared.eventstore.postgres import PostgresEventStore, StatementTimeout, create_pool


@pytest.fixture(params=["memory", "postgres", "postgres-direct"])
def store(request: pytest.FixtureRequest) -> EventStore:
    if request.param == "memory":
        return InMemoryEventStore()
    # Looked up lazily so the memory cases need no database at all. "postgres" coalesces
    # the appends made at the same moment (the services' store); "direct" sends each alone.
    pool = request.getfixturevalue("pg_pool")
    return PostgresEventStore(pool, coalesce=request.param == "postgres")


def new_stream(category: str = "test") -> str:
    return f"{category}-{uuid.uuid4().hex}"


def ev(n: int, type_: str = "Happened", **data: Any) -> NewEvent:
    """Rows of types the catalogue does not know: the store's contract, without the mapper's
    typed events in the way (they pass through as Unrecognised)."""
    return NewEvent(Unrecognised(type=type_, data={"n": n, **data}), metadata={"seq": n})


def data_of(r: RecordedEvent) -> dict[str, Any]:
    assert isinstance(r.event, Unrecognised)
    return r.event.data


async def read_everything(store: EventStore, after: Position = START) -> list[RecordedEvent]:
    """read_all page by page until it returns nothing: the log may hold other tests' events."""
    out: list[RecordedEvent] = []
    while True:
        page = await store.read_all(after, limit=500)
        if not page:
            return out
        out.extend(page)
        after = page[-1].position


async def read_until(
    store: EventStore, after: Position, done: Callable[[list[RecordedEvent]], bool]
) -> list[RecordedEvent]:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        events = await read_everything(store, after)
        if done(events) or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.1)


# --- contract: every backend ---------------------------------------------------------------


async def test_append_to_new_stream_numbers_versions_and_positions(store: EventStore) -> None:
    stream = new_stream()
    events = [ev(i) for i in range(4)]

    appended = await store.append(stream, events, NO_STREAM)

    assert [a.event_id for a in appended] == [e.id for e in events]
    assert [a.stream_version for a in appended] == [0, 1, 2, 3]
    assert not any(a.duplicate for a in appended)
    positions = [a.global_position for a in appended]
    assert positions == sorted(set(positions))

    recorded = await store.read_stream(stream)
    assert [r.id for r in recorded] == [e.id for e in events]
    assert [r.version for r in recorded] == [0, 1, 2, 3]
    assert [r.position.global_position for r in recorded] == positions
    assert [r.position for r in recorded] == sorted(r.position for r in recorded)
    assert all(r.stream == stream and r.type == "Happened" for r in recorded)
    assert [data_of(r) for r in recorded] == [{"n": i} for i in range(4)]
    assert [r.metadata for r in recorded] == [{"seq": i} for i in range(4)]
    assert all(r.recorded_at.tzinfo is not None for r in recorded)


async def test_append_nothing_is_a_no_op(store: EventStore) -> None:
    stream = new_stream()
    assert await store.append(stream, [], NO_STREAM) == []
    assert await store.read_stream(stream) == []


async def test_no_stream_on_existing_stream_raises(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, [ev(0)], NO_STREAM)

    with pytest.raises(WrongExpectedVersion):
        await store.append(stream, [ev(1)], NO_STREAM)

    assert [data_of(r)["n"] for r in await store.read_stream(stream)] == [0]


async def test_exact_expected_version_appends_and_stale_one_raises(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, [ev(0), ev(1)], NO_STREAM)

    appended = await store.append(stream, [ev(2)], 1)
    assert [a.stream_version for a in appended] == [2]

    stale = ev(3)
    with pytest.raises(WrongExpectedVersion):
        await store.append(stream, [stale], 1)
    with pytest.raises(WrongExpectedVersion):
        await store.append(stream, [stale], 5)  # ahead of the stream is wrong too

    assert [r.version for r in await store.read_stream(stream)] == [0, 1, 2]
    assert await store.find(stale.id) is None


async def test_any_version_appends_after_whatever_is_there(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, [ev(0)], ANY)
    appended = await store.append(stream, [ev(1), ev(2)], ANY)
    assert [a.stream_version for a in appended] == [1, 2]


async def test_stored_event_id_is_reported_duplicate_and_not_stored_twice(
    store: EventStore,
) -> None:
    stream = new_stream()
    first, second = ev(0), ev(1)
    original = await store.append(stream, [first, second], NO_STREAM)

    again = await store.append(stream, [first], ANY)

    assert len(again) == 1
    assert again[0].duplicate is True
    assert again[0].event_id == first.id
    assert again[0].stream_version == original[0].stream_version
    assert again[0].global_position == original[0].global_position
    assert [r.id for r in await store.read_stream(stream)] == [first.id, second.id]


async def test_retrying_a_whole_batch_with_stale_expected_version_is_not_an_error(
    store: EventStore,
) -> None:
    # A consumer that crashed after the append but before its ack redelivers the same batch
    # with the expected version it saw then: the retry must succeed as a no-op.
    stream = new_stream()
    batch = [ev(0), ev(1)]
    original = await store.append(stream, batch, NO_STREAM)

    retried = await store.append(stream, batch, NO_STREAM)

    assert [a.duplicate for a in retried] == [True, True]
    assert [(a.stream_version, a.global_position) for a in retried] == [
        (a.stream_version, a.global_position) for a in original
    ]
    assert len(await store.read_stream(stream)) == 2


async def test_partly_stored_batch_still_checks_the_expected_version(store: EventStore) -> None:
    stream = new_stream()
    known, fresh = ev(0), ev(1)
    await store.append(stream, [known], NO_STREAM)

    with pytest.raises(WrongExpectedVersion):
        await store.append(stream, [known, fresh], NO_STREAM)

    appended = await store.append(stream, [known, fresh], 0)
    assert [(a.duplicate, a.stream_version) for a in appended] == [(True, 0), (False, 1)]
    assert [r.id for r in await store.read_stream(stream)] == [known.id, fresh.id]


async def test_event_id_stored_in_another_stream_is_a_duplicate(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    event = ev(0)
    await store.append(a, [event], NO_STREAM)

    appended = await store.append(b, [event], NO_STREAM)

    assert appended[0].duplicate is True
    assert await store.read_stream(b) == []
    found = await store.find(event.id)
    assert found is not None and found.stream == a


async def test_read_stream_from_version(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, [ev(i) for i in range(5)], NO_STREAM)

    assert [r.version for r in await store.read_stream(stream, from_version=3)] == [3, 4]
    assert [r.version for r in await store.read_stream(stream, from_version=0)] == list(range(5))
    assert await store.read_stream(stream, from_version=5) == []
    assert await store.read_stream(new_stream()) == []


async def test_read_all_after_a_position_returns_only_later_events_in_order(
    store: EventStore,
) -> None:
    a, b = new_stream(), new_stream()
    await store.append(a, [ev(0)], NO_STREAM)
    marker = (await store.read_stream(a))[-1].position
    await store.append(b, [ev(1)], NO_STREAM)
    await store.append(a, [ev(2)], 0)
    await store.append(b, [ev(3), ev(4)], 0)

    # read_all holds back rows newer than any transaction still open on the server (in any
    # database: transaction ids are cluster-wide), so wait for ours instead of reading once.
    later = await read_until(store, marker, lambda rs: sum(r.stream in (a, b) for r in rs) >= 4)

    assert all(r.position > marker for r in later)
    assert [r.position for r in later] == sorted({r.position for r in later})
    mine = [(r.stream, data_of(r)["n"]) for r in later if r.stream in (a, b)]
    assert mine == [(b, 1), (a, 2), (b, 3), (b, 4)]

    everything = await read_until(store, START, lambda rs: sum(r.stream in (a, b) for r in rs) >= 5)
    ours = [data_of(r)["n"] for r in everything if r.stream in (a, b)]
    assert ours == [0, 1, 2, 3, 4]


async def test_read_all_honours_limit(store: EventStore) -> None:
    stream = new_stream()
    await store.append(stream, [ev(0)], NO_STREAM)
    marker = (await store.read_stream(stream))[-1].position
    await store.append(stream, [ev(i) for i in range(1, 6)], 0)

    # A row is read once every older transaction of the server has ended (the session's
    # database has other users), so the first page may take a moment to show.
    deadline = time.monotonic() + 30
    while len(page := await store.read_all(marker, limit=2)) < 2:
        assert time.monotonic() < deadline, "the appended events never became readable"
        await asyncio.sleep(0.05)
    assert len(page) == 2
    # The session's database has other writers (an e2e stack's services may still run): the
    # page is the next two events of the log, ours among them in order, and paging on from
    # its end gives the rest of ours, none twice.
    rest = await store.read_all(page[-1].position, limit=1_000)
    assert all(r.position > page[-1].position for r in rest)
    ours = [data_of(r)["n"] for r in [*page, *rest] if r.stream == stream]
    assert ours == [1, 2, 3, 4, 5]


async def read_category_everything(
    store: EventStore, category: str, after: Position = START
) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    while True:
        page = await store.read_category(category, after, limit=2)  # small pages: paging works
        if not page:
            return out
        out.extend(page)
        after = page[-1].position


async def test_read_category_returns_only_that_category_in_read_all_order(
    store: EventStore,
) -> None:
    cat = f"cat{uuid.uuid4().hex[:12]}"
    a, b = f"{cat}-{uuid.uuid4().hex}", f"{cat}-{uuid.uuid4().hex}"
    # Same prefix, another category: `catX2-...` and `catX_more-...` are not `catX`.
    others = [f"{cat}2-{uuid.uuid4().hex}", f"{cat}_more-{uuid.uuid4().hex}", new_stream()]
    await store.append(a, [ev(0)], NO_STREAM)
    await store.append(others[0], [ev(100)], NO_STREAM)
    await store.append(b, [ev(1), ev(2)], NO_STREAM)
    await store.append(others[1], [ev(101)], NO_STREAM)
    await store.append(cat, [ev(3)], NO_STREAM)  # a stream named just the category is in it
    await store.append(others[2], [ev(102)], NO_STREAM)
    await store.append(a, [ev(4)], 0)

    deadline = asyncio.get_running_loop().time() + 10
    while True:  # held back while any older transaction on the server is open (see read_all)
        mine = await read_category_everything(store, cat)
        if len(mine) >= 5 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)

    assert [(r.stream, data_of(r)["n"]) for r in mine] == [(a, 0), (b, 1), (b, 2), (cat, 3), (a, 4)]
    everything = [r for r in await read_everything(store) if r.stream in (a, b, cat)]
    assert mine == everything  # same events, positions and order as read_all
    after = await store.read_category(cat, mine[1].position, limit=10)
    assert [data_of(r)["n"] for r in after] == [2, 3, 4]
    assert await store.read_category(cat, mine[-1].position) == []
    assert await store.read_category(f"none{uuid.uuid4().hex}") == []


async def test_find_by_event_id(store: EventStore) -> None:
    stream = new_stream()
    events = [ev(0), ev(1, "Other", note="x")]
    await store.append(stream, events, NO_STREAM)

    found = await store.find(events[1].id)

    assert found is not None
    assert (found.id, found.stream, found.version, found.type) == (events[1].id, stream, 1, "Other")
    assert data_of(found) == {"n": 1, "note": "x"}
    assert found == (await store.read_stream(stream))[1]
    assert await store.find(uuid.uuid4()) is None


async def test_transaction_rolls_back_every_append_on_error(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    ea, eb = ev(0), ev(1)

    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction() as tx:
            await tx.append(a, [ea], NO_STREAM)
            await tx.append(b, [eb], NO_STREAM)
            raise RuntimeError("boom")

    assert await store.read_stream(a) == []
    assert await store.read_stream(b) == []
    assert await store.find(ea.id) is None
    assert await store.find(eb.id) is None
    # Nothing half-written blocks a later append that expects the streams to be new.
    await store.append(a, [ea], NO_STREAM)
    assert [r.id for r in await store.read_stream(a)] == [ea.id]


async def test_transaction_rolls_back_when_a_later_append_conflicts(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    await store.append(b, [ev(0)], NO_STREAM)
    ea = ev(1)

    with pytest.raises(WrongExpectedVersion):
        async with store.transaction() as tx:
            await tx.append(a, [ea], NO_STREAM)
            await tx.append(b, [ev(2)], NO_STREAM)

    assert await store.find(ea.id) is None
    assert len(await store.read_stream(b)) == 1


async def test_transaction_commits_every_append(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    ea, eb = ev(0), ev(1)

    async with store.transaction() as tx:
        await tx.append(a, [ea], NO_STREAM)
        await tx.append(b, [eb], NO_STREAM)
        # Reads inside the transaction see its own appends.
        assert [r.id for r in await tx.read_stream(a)] == [ea.id]

    assert [r.id for r in await store.read_stream(a)] == [ea.id]
    assert [r.id for r in await store.read_stream(b)] == [eb.id]


async def test_data_and_metadata_round_trip_unicode_and_nested_json(store: EventStore) -> None:
    stream = new_stream()
    data = {
        "text": 'Olá, 世界! 👋🏽 — "quoted" \\ back\nslash',
        "nested": {"list": [1, 2.5, None, True, {"deep": ["é", {"x": []}]}], "empty": {}},
        "big": 2**53 + 1,
        "negative": -7,
    }
    metadata = {"correlation_id": str(uuid.uuid4()), "trace": {"ñ": ["ü", "ß"]}, "n": None}
    event = NewEvent(Unrecognised(type="Unicode✓", data=data), metadata=metadata)

    await store.append(stream, [event], NO_STREAM)

    (recorded,) = await store.read_stream(stream)
    assert recorded.type == "Unicode✓"
    assert data_of(recorded) == data
    assert recorded.metadata == metadata
    found = await store.find(event.id)
    assert found is not None and data_of(found) == data and found.metadata == metadata


async def test_default_metadata_is_an_empty_object(store: EventStore) -> None:
    stream = new_stream()
    event = NewEvent(Unrecognised(type="Bare", data={}))
    await store.append(stream, [event], NO_STREAM)
    (recorded,) = await store.read_stream(stream)
    assert data_of(recorded) == {} and recorded.metadata == {}


async def test_append_batch_writes_every_stream_and_reports_each_in_order(
    store: EventStore,
) -> None:
    a, b, c = new_stream(), new_stream(), new_stream()
    await store.append(b, [ev(0)], NO_STREAM)
    ea, eb1, eb2 = ev(1), ev(2), ev(3)

    result = await store.append_batch(
        [StreamWrite(a, [ea], NO_STREAM), StreamWrite(c, []), StreamWrite(b, [eb1, eb2], 0)]
    )

    assert [[(x.event_id, x.stream_version, x.duplicate) for x in r] for r in result] == [
        [(ea.id, 0, False)],
        [],
        [(eb1.id, 1, False), (eb2.id, 2, False)],
    ]
    assert result[2][0].global_position < result[2][1].global_position
    assert [r.id for r in await store.read_stream(a)] == [ea.id]
    assert [r.version for r in await store.read_stream(b)] == [0, 1, 2]
    assert await store.read_stream(c) == []


async def test_append_batch_is_all_or_nothing_when_one_stream_conflicts(
    store: EventStore,
) -> None:
    a, b = new_stream(), new_stream()
    await store.append(b, [ev(0)], NO_STREAM)
    ea = ev(1)

    with pytest.raises(WrongExpectedVersion):
        await store.append_batch([StreamWrite(a, [ea], NO_STREAM), StreamWrite(b, [ev(2)], 5)])

    assert await store.find(ea.id) is None
    assert len(await store.read_stream(b)) == 1


async def test_append_batch_retried_whole_reports_duplicates(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    writes = [StreamWrite(a, [ev(0)], NO_STREAM), StreamWrite(b, [ev(1)], NO_STREAM)]
    first = await store.append_batch(writes)

    again = await store.append_batch(writes)

    assert [[x.duplicate for x in r] for r in again] == [[True], [True]]
    assert [r[0].global_position for r in again] == [r[0].global_position for r in first]
    assert len(await store.read_stream(a)) == len(await store.read_stream(b)) == 1


async def test_append_batch_naming_a_stream_twice_appends_its_writes_in_turn(
    store: EventStore,
) -> None:
    a, b = new_stream(), new_stream()
    e1, e2, e3 = ev(1), ev(2), ev(3)

    result = await store.append_batch(
        [StreamWrite(a, [e1], NO_STREAM), StreamWrite(b, [e2]), StreamWrite(a, [e3], 0)]
    )

    assert [[(x.event_id, x.stream_version) for x in r] for r in result] == [
        [(e1.id, 0)],
        [(e2.id, 0)],
        [(e3.id, 1)],
    ]
    assert [data_of(r) for r in await store.read_stream(a)] == [{"n": 1}, {"n": 3}]
    with pytest.raises(WrongExpectedVersion):  # the second write sees the first's event
        await store.append_batch([StreamWrite(b, [ev(4)], 0), StreamWrite(b, [ev(5)], 0)])
    assert len(await store.read_stream(b)) == 1


async def test_append_batch_holding_one_new_event_twice_stores_it_once(
    store: EventStore,
) -> None:
    a, b = new_stream(), new_stream()
    twice = ev(1)

    first, second = await store.append_batch([StreamWrite(a, [twice]), StreamWrite(b, [twice])])

    assert (first[0].duplicate, second[0].duplicate) == (False, True)
    assert second[0].global_position == first[0].global_position
    assert [r.id for r in await store.read_stream(a)] == [twice.id]
    assert await store.read_stream(b) == []


async def test_a_stream_given_no_events_in_a_batch_is_not_checked(pg_pool: asyncpg.Pool) -> None:
    """In SQL (the store drops empty writes before it): nothing of that stream is new."""
    a, b = new_stream(), new_stream()
    rows = await pg_pool.fetch(
        "SELECT * FROM append_to_streams($1, $2, $3, $4, $5, $6, $7)",
        [a, b],
        [5, -1],
        [0, 1],
        [uuid.uuid4()],
        ["Happened"],
        ["{}"],
        ["{}"],
    )
    assert [(r["stream_index"], r["stream_version"]) for r in rows] == [(2, 0)]


async def test_append_batch_of_nothing_is_a_no_op(store: EventStore) -> None:
    assert await store.append_batch([]) == []
    assert await store.append_batch([StreamWrite(new_stream(), [])]) == [[]]


async def test_concurrent_appends_expecting_a_new_stream_let_exactly_one_win(
    store: EventStore,
) -> None:
    stream = new_stream()
    results = await asyncio.gather(
        *(store.append(stream, [ev(i)], NO_STREAM) for i in range(8)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, WrongExpectedVersion) for e in losers)
    assert len(await store.read_stream(stream)) == 1


# --- PostgreSQL only -------------------------------------------------------------------------


async def test_concurrent_appends_to_one_stream_get_contiguous_versions(
    pg_pool: asyncpg.Pool,
) -> None:
    store = PostgresEventStore(pg_pool)
    stream = new_stream()

    results = await asyncio.gather(*(store.append(stream, [ev(i)], ANY) for i in range(20)))

    versions = sorted(r[0].stream_version for r in results)
    assert versions == list(range(20))
    recorded = await store.read_stream(stream)
    assert [r.version for r in recorded] == list(range(20))
    assert sorted(data_of(r)["n"] for r in recorded) == list(range(20))


async def test_crossed_append_batches_do_not_deadlock(pg_pool: asyncpg.Pool) -> None:
    """Two batches locking the same two streams in opposite orders: the function takes the
    locks in one fixed order, so both commit (no deadlock_timeout abort)."""
    store = PostgresEventStore(pg_pool)
    a, b = new_stream(), new_stream()

    await asyncio.gather(
        *(
            store.append_batch(
                [StreamWrite(x, [ev(i)]), StreamWrite(y, [ev(i + 100)])]
                if i % 2
                else [StreamWrite(y, [ev(i)]), StreamWrite(x, [ev(i + 100)])]
            )
            for i in range(20)
            for x, y in [(a, b)]
        )
    )

    assert [r.version for r in await store.read_stream(a)] == list(range(20))
    assert [r.version for r in await store.read_stream(b)] == list(range(20))


async def test_read_all_never_skips_a_row_that_commits_later(pg_pool: asyncpg.Pool) -> None:
    reader = PostgresEventStore(pg_pool)
    stream_a, stream_b = new_stream(), new_stream()
    ea, eb = ev(0, "A"), ev(1, "B")

    async with pg_pool.acquire() as conn_a:
        tx = conn_a.transaction()
        await tx.start()
        try:
            # A takes its transaction id (and global position) first but commits last.
            await PostgresEventStore(conn=conn_a).append(stream_a, [ea], NO_STREAM)
            await reader.append(stream_b, [eb], NO_STREAM)  # own transaction, committed

            before = await read_everything(reader)
            ids = {r.id for r in before}
            assert eb.id not in ids, "EB was handed out while an older transaction was open"
            assert ea.id not in ids
            last = before[-1].position if before else START
        except BaseException:
            await tx.rollback()
            raise
        await tx.commit()

    after = await read_everything(reader, last)
    ours = [r.id for r in after if r.id in (ea.id, eb.id)]
    assert ours == [ea.id, eb.id]
    assert all(r.position > last for r in after)


async def test_read_category_never_skips_a_row_that_commits_later(pg_pool: asyncpg.Pool) -> None:
    reader = PostgresEventStore(pg_pool)
    cat = f"cat{uuid.uuid4().hex[:12]}"
    stream_a, stream_b = f"{cat}-a", f"{cat}-b"
    ea, eb = ev(0, "A"), ev(1, "B")

    async with pg_pool.acquire() as conn_a:
        tx = conn_a.transaction()
        await tx.start()
        try:
            await PostgresEventStore(conn=conn_a).append(stream_a, [ea], NO_STREAM)
            await reader.append(stream_b, [eb], NO_STREAM)  # committed, but after A's txid

            before = await reader.read_category(cat)
            assert before == [], "EB was handed out while an older transaction was open"
        except BaseException:
            await tx.rollback()
            raise
        await tx.commit()

    deadline = asyncio.get_running_loop().time() + 10
    after = await reader.read_category(cat)
    while len(after) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        after = await reader.read_category(cat)
    assert [r.id for r in after] == [ea.id, eb.id]


async def test_a_caught_up_category_read_is_a_probe_not_a_scan(pg_pool: asyncpg.Pool) -> None:
    """A subscription of a rare category polls from its last event while the rest of the
    log grows: the read must not walk what was appended since (nor the category's past),
    under the plan a prepared statement settles on after a few calls (the generic one)."""
    store = PostgresEventStore(pg_pool)
    rare = f"rare{uuid.uuid4().hex[:12]}"
    # A past of its own (what the category index alone would have to walk)...
    await store.append_batch([StreamWrite(f"{rare}-{i}", [ev(i)], NO_STREAM) for i in range(500)])
    mine = (await store.read_category(rare, limit=1000))[-1]
    busy = f"busy{uuid.uuid4().hex[:12]}"
    # ...and 2,000 rows of another category after it, in 40 transactions (a log moving on).
    for t in range(40):
        await store.append_batch(
            [StreamWrite(f"{busy}-{t}-{i}", [ev(i)], NO_STREAM) for i in range(50)]
        )
    async with pg_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"
            " SELECT * FROM read_category($1, $2::text::xid8, $3, 500)",
            rare,
            str(mine.position.transaction_id),
            mine.position.global_position,
        )
    root = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    assert root["Actual Rows"] == 0
    touched = root["Shared Hit Blocks"] + root["Shared Read Blocks"]
    # A probe touches an index page or three; walking either the 500 or the 2,000 rows
    # touches dozens.
    assert touched <= 5, f"the read touched {touched} pages for nothing: {root}"


async def test_transaction_on_a_connection_bound_store_nests(pg_pool: asyncpg.Pool) -> None:
    # transaction() on a store bound to a connection already in a transaction is a savepoint:
    # rolling it back must not undo the outer transaction's earlier appends.
    stream_a, stream_b = new_stream(), new_stream()
    ea, eb = ev(0), ev(1)
    async with pg_pool.acquire() as conn, conn.transaction():
        outer = PostgresEventStore(conn=conn)
        await outer.append(stream_a, [ea], NO_STREAM)
        with pytest.raises(RuntimeError):
            async with outer.transaction() as inner:
                await inner.append(stream_b, [eb], NO_STREAM)
                raise RuntimeError("inner fails")
    reader = PostgresEventStore(pg_pool)
    assert [r.id for r in await reader.read_stream(stream_a)] == [ea.id]
    assert await reader.find(eb.id) is None


async def test_a_full_connection_limit_is_unavailability_not_a_failure(database_url: str) -> None:
    """When every connection the server allows is taken, the store must say "retry later"
    (uncounted) so messages are not dead-lettered for it."""
    role = f"wa_limit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    host_part = database_url.split("@", 1)[1]
    dsn = f"postgresql://{role}@{host_part}"
    holder = await asyncpg.connect(dsn)  # takes the role's only connection
    pool = await create_pool(dsn, min_size=0, max_size=1)
    try:
        with pytest.raises(StoreUnavailable):
            await PostgresEventStore(pool).append(new_stream(), [ev(0)], NO_STREAM)
        await holder.close()
        # The connection is free again: the same call goes through.
        [appended] = await PostgresEventStore(pool).append(new_stream(), [ev(1)], NO_STREAM)
        assert appended.stream_version == 0
    finally:
        await pool.close()
        if not holder.is_closed():
            await holder.close()
        await admin.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_a_stream_name_too_long_for_the_index_is_rejected_not_unavailable(
    store: EventStore,
) -> None:
    """The event itself is refused (a handler failure), never an outage to wait out."""
    long = "test-" + "x" * 1000
    with pytest.raises(EventRejected):
        await store.append(long, [ev(0)])
    with pytest.raises(EventRejected):
        await store.append_batch([StreamWrite(new_stream(), [ev(1)]), StreamWrite(long, [ev(2)])])
    assert await store.read_stream(long) == []


async def test_an_event_that_does_not_fit_its_type_is_rejected_not_stored(
    store: EventStore,
) -> None:
    """A Struct built from outside data holding what its fields do not (msgspec does not
    check at construction) would be a row no reader can decode: refused, with its batch."""
    from shared.events.dedup import StatusReceived

    unfit = StatusReceived(wamid="w", status="failed", errors="oops")  # type: ignore[arg-type]
    stream, other = new_stream("message"), new_stream("message")
    with pytest.raises(EventRejected, match="does not fit"):
        await store.append(stream, [NewEvent(unfit)])
    fit = NewEvent(StatusReceived(wamid="w", status="sent", errors=[{"code": 1}]))
    with pytest.raises(EventRejected):
        await store.append_batch(
            [StreamWrite(other, [fit]), StreamWrite(stream, [NewEvent(unfit)])]
        )
    assert await store.read_stream(stream) == [] and await store.read_stream(other) == []
    [kept] = await store.append(other, [fit])
    assert not kept.duplicate


async def test_a_value_postgresql_cannot_store_is_rejected(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool)
    stream = new_stream()
    # jsonb cannot hold U+0000: PostgreSQL refuses it as a data exception.
    with pytest.raises(EventRejected):
        await store.append(stream, [NewEvent(Unrecognised(type="Nul", data={"t": "a\x00b"}))])
    assert await store.read_stream(stream) == []


async def test_appends_made_at_once_each_get_their_own_answer(store: EventStore) -> None:
    """Many appends at the same moment (a consumer's window of messages, which the services'
    store sends in one statement): each is written or refused for its own reason alone."""
    fresh = [new_stream() for _ in range(6)]
    contested = new_stream()
    batch_a, batch_b = new_stream(), new_stream()
    calls = [store.append(s, [ev(i)], NO_STREAM) for i, s in enumerate(fresh)]
    calls += [store.append(contested, [ev(10)], NO_STREAM) for _ in range(2)]
    calls.append(
        store.append_batch(
            [StreamWrite(batch_a, [ev(20), ev(21)]), StreamWrite(batch_b, [ev(22)], NO_STREAM)]
        )
    )
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for stream, outcome in zip(fresh, outcomes[:6], strict=True):
        assert not isinstance(outcome, BaseException), outcome
        [appended] = outcome
        [recorded] = await store.read_stream(stream)
        assert (recorded.id, recorded.version) == (appended.event_id, 0)
    won, lost = sorted(outcomes[6:8], key=lambda o: isinstance(o, BaseException))
    assert isinstance(lost, WrongExpectedVersion) and not isinstance(won, BaseException)
    assert len(await store.read_stream(contested)) == 1
    batch = outcomes[8]
    assert not isinstance(batch, BaseException), batch
    assert [[a.stream_version for a in w] for w in batch] == [[0, 1], [0]]
    assert [data_of(r) for r in await store.read_stream(batch_a)] == [{"n": 20}, {"n": 21}]


async def test_coalesced_appends_refused_by_the_database_fail_alone(
    pg_pool: asyncpg.Pool,
) -> None:
    """One statement for all of them, and a row PostgreSQL refuses among them: nothing of the
    statement was written, so each is sent again alone, and only the refused one fails."""
    from prometheus_client import REGISTRY

    store = PostgresEventStore(pg_pool)
    streams = [new_stream() for _ in range(4)]
    bad = new_stream()
    before = REGISTRY.get_sample_value("eventstore_coalesced_writes_sum") or 0.0
    outcomes = await asyncio.gather(
        *(store.append(s, [ev(i)]) for i, s in enumerate(streams)),
        store.append(bad, [NewEvent(Unrecognised(type="Nul", data={"t": "a\x00b"}))]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[-1], EventRejected)
    assert not any(isinstance(o, BaseException) for o in outcomes[:-1]), outcomes
    for i, s in enumerate(streams):
        assert [data_of(r) for r in await store.read_stream(s)] == [{"n": i}]
    assert await store.read_stream(bad) == []
    # They went together first (five appends in one statement), then each alone.
    after = REGISTRY.get_sample_value("eventstore_coalesced_writes_sum") or 0.0
    assert after - before >= 5


async def test_a_statement_that_runs_out_of_time_is_the_messages_problem_not_an_outage(
    pg_pool: asyncpg.Pool, database_url: str
) -> None:
    """An append stuck behind a lock for longer than the command timeout, on a healthy
    connection: StatementTimeout (counted, dead-lettered after its attempts), never
    StoreUnavailable (waited out for ever)."""
    stream = new_stream()
    holder = await asyncpg.connect(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=1, command_timeout=0.3)
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", stream)
        with pytest.raises(StatementTimeout):
            await PostgresEventStore(pool).append(stream, [ev(0)])
        await holder.execute("SELECT pg_advisory_unlock_all()")
        # The connection is still good: the next append goes through.
        await PostgresEventStore(pool).append(stream, [ev(1)])
        assert [data_of(r)["n"] for r in await PostgresEventStore(pool).read_stream(stream)] == [1]
    finally:
        await pool.close()
        await holder.close()


async def test_read_streams_reads_several_whole_streams_at_once(store: EventStore) -> None:
    one, two, empty = new_stream(), new_stream(), new_stream()
    await store.append(one, [ev(0), ev(1)], NO_STREAM)
    await store.append(two, [ev(2)], NO_STREAM)
    await store.append(one, [ev(3)])
    read = await store.read_streams([two, empty, one, two])
    assert list(read) == [two, empty, one]  # each asked for once, in the order asked
    assert [data_of(r)["n"] for r in read[one]] == [0, 1, 3]
    assert [r.version for r in read[one]] == [0, 1, 2]
    assert [data_of(r)["n"] for r in read[two]] == [2] and read[empty] == []
    assert read[one] == await store.read_stream(one)
    assert await store.read_streams([]) == {}
