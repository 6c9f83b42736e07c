"""The subscription runner's contract (shared/eventstore/subscription.py, leadership.py),
against real PostgreSQL.

The session database is shared: every test uses its own subscription name and its own
category (or filters read_all to its own streams), and its handler records what it handled in
`sub_effects`, in the batch's transaction. That table has no unique key on purpose: an event
handled twice shows up as two rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from services.webhook_relay.store import RelayStore
from shared.eventstore import START, NewEvent, Position, RecordedEvent, Unrecognised
from shared.eventstore.leadership import Leadership
from shared.eventstore.migrate import migrate
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.eventstore.subscription import Batch, CheckpointMoved, Subscription, checkpoint
from shared.stack import ROOT
from tests.support.tcp_proxy import TcpProxy


async def until(pred: Callable[[], Any], within: float = 20.0, message: str = "") -> None:
    deadline = time.monotonic() + within
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for: {message or pred}")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def effects_table(pg_pool: asyncpg.Pool) -> asyncpg.Pool:
    await pg_pool.execute(
        "CREATE TABLE IF NOT EXISTS sub_effects (seq bigserial PRIMARY KEY,"
        " subscription text NOT NULL, instance text NOT NULL, event_id uuid NOT NULL)"
    )
    return pg_pool


def names() -> tuple[str, str]:
    """A fresh subscription name and category."""
    tag = uuid.uuid4().hex[:12]
    return f"test-{tag}", f"sub{tag}"


def recorder(instance: str, streams: Callable[[str], bool] = lambda _: True) -> Any:
    """A handler that records each event it handles (of the streams it cares about)."""

    async def handle(batch: Batch) -> None:
        mine = [e for e in batch.events if streams(e.stream)]
        await batch.conn.executemany(
            "INSERT INTO sub_effects (subscription, instance, event_id) VALUES ($1, $2, $3)",
            [(batch.subscription, instance, e.id) for e in mine],
        )

    return handle


async def effects(pool: asyncpg.Pool, name: str) -> list[tuple[str, uuid.UUID]]:
    rows = await pool.fetch(
        "SELECT instance, event_id FROM sub_effects WHERE subscription = $1 ORDER BY seq", name
    )
    return [(r["instance"], r["event_id"]) for r in rows]


async def handled_ids(pool: asyncpg.Pool, name: str) -> list[uuid.UUID]:
    return [event_id for _, event_id in await effects(pool, name)]


async def append(store: PostgresEventStore, stream: str, count: int = 1) -> list[uuid.UUID]:
    events = [NewEvent(Unrecognised(type="Happened", data={"n": i})) for i in range(count)]
    await store.append(stream, events)
    return [e.id for e in events]


@contextlib.asynccontextmanager
async def following(*runs: Awaitable[None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_read_model_commits_without_waiting_for_the_flush_and_a_processor_waits(
    effects_table: asyncpg.Pool,
) -> None:
    """durable=False: the batch's transaction (writes and checkpoint) commits without
    waiting for the WAL flush; the default waits. The setting is the transaction's only:
    the pooled connection's next user commits durably again."""
    pool = effects_table
    for durable, expected in ((False, "off"), (True, "on")):
        name, cat = names()
        ids = await append(PostgresEventStore(pool), f"{cat}-1", 2)
        seen: list[str] = []
        record = recorder("only")

        async def handle(batch: Batch, seen: list[str] = seen, record: Any = record) -> None:
            seen.append(await batch.conn.fetchval("SHOW synchronous_commit"))
            await record(batch)

        subscription = Subscription(name, handle, pool, category=cat, durable=durable)
        assert await subscription.step() == 2
        assert seen == [expected]
        assert await handled_ids(pool, name) == ids
        assert await checkpoint(pool, name) != START
        # Every connection of the pool is back to the server's default.
        conns = [await pool.acquire() for _ in range(pool.get_size())]
        try:
            for conn in conns:
                assert await conn.fetchval("SHOW synchronous_commit") == "on"
        finally:
            for conn in conns:
                await pool.release(conn)


# --- checkpoint and writes commit together ---------------------------------------------------


async def test_handler_writes_and_checkpoint_commit_together_or_not_at_all(
    effects_table: asyncpg.Pool,
) -> None:
    pool = effects_table
    name, cat = names()
    ids = await append(PostgresEventStore(pool), f"{cat}-1", 3)
    calls = 0
    committed: list[int] = []
    retrying, release = asyncio.Event(), asyncio.Event()
    record = recorder("only")

    async def handle(batch: Batch) -> None:
        nonlocal calls
        calls += 1
        batch.on_commit(lambda: committed.append(calls))
        if calls == 2:  # the retry waits, inside its transaction, until the test has looked
            retrying.set()
            await release.wait()
        await record(batch)
        if calls == 1:
            raise RuntimeError("handler failed after writing")

    subscription = Subscription(name, handle, pool, category=cat, retry_seconds=0.05)
    async with following(subscription.follow()):
        await asyncio.wait_for(retrying.wait(), 20)
        # The failed attempt wrote a row and raised: neither its row nor its checkpoint is left,
        # and its after-commit callback never ran.
        assert await effects(pool, name) == []
        assert await checkpoint(pool, name) == START
        assert committed == []
        assert subscription.failures == 1
        assert "handler failed after writing" in (subscription.last_error or "")

        release.set()
        await until(lambda: subscription.caught_up.is_set() and committed, message="caught up")
        assert await handled_ids(pool, name) == ids
        [last] = await PostgresEventStore(pool).read_stream(f"{cat}-1", 2)
        assert await checkpoint(pool, name) == last.position
        assert committed == [2]
        assert subscription.failures == 0


async def test_a_stale_instance_cannot_commit_a_batch_twice(effects_table: asyncpg.Pool) -> None:
    """Two instances of one name following with no leadership at all (as in the moment after
    a lost lock, before the old holder notices): the checkpoint fence lets each batch commit
    once."""
    pool = effects_table
    name, cat = names()
    store = PostgresEventStore(pool)
    ids: list[uuid.UUID] = []
    one = Subscription(name, recorder("one"), pool, category=cat, batch_size=3, poll_interval=0)
    two = Subscription(name, recorder("two"), pool, category=cat, batch_size=3, poll_interval=0)
    async with following(one.follow(), two.follow()):
        for i in range(15):
            ids += await append(store, f"{cat}-{i % 4}", 2)
        await until(lambda: _count(pool, name, len(ids)), message="every event handled")
    assert await handled_ids(pool, name) == ids


async def _count(pool: asyncpg.Pool, name: str, at_least: int) -> bool:
    return len(await handled_ids(pool, name)) >= at_least


# --- one active instance per name ------------------------------------------------------------


async def test_one_instance_processes_and_the_other_takes_over_with_nothing_twice(
    effects_table: asyncpg.Pool, database_url: str
) -> None:
    pool = effects_table
    name, cat = names()
    store = PostgresEventStore(pool)

    def instance(label: str) -> tuple[Subscription, Leadership]:
        subscription = Subscription(
            name, recorder(label), pool, category=cat, batch_size=3, poll_interval=0.02
        )
        return subscription, Leadership(
            database_url, name, subscription.follow, retry_seconds=0.05, check_seconds=0.3
        )

    _, lead_a = instance("a")
    _, lead_b = instance("b")
    async with following(lead_a.run()):
        await until(lambda: lead_a.is_leader, message="a leads")
        async with following(lead_b.run()):
            await until(lambda: lead_b.reason.startswith("standby"), message="b is a standby")
            before = await append(store, f"{cat}-x", 10)
            await until(lambda: _count(pool, name, 10), message="a handled the first events")
            assert {who for who, _ in await effects(pool, name)} == {"a"}
            assert not lead_b.is_leader

            # Events keep arriving while a's lock connection is cut and b takes over.
            async def keep_appending() -> list[uuid.UUID]:
                ids: list[uuid.UUID] = []
                for i in range(40):
                    ids += await append(store, f"{cat}-{i % 3}")
                    await asyncio.sleep(0.01)
                return ids

            during = asyncio.create_task(keep_appending())
            await asyncio.sleep(0.1)
            assert lead_a.lock_pid is not None
            await pool.execute("SELECT pg_terminate_backend($1)", lead_a.lock_pid)
            await until(lambda: lead_b.is_leader, message="b took over")
            later = await during
            fence = await append(store, f"{cat}-fence")
            everything = before + later + fence
            await until(lambda: _count(pool, name, len(everything)), message="the fence")
            handled = await effects(pool, name)
            assert [event_id for _, event_id in handled] == everything  # once each, in order
            assert handled[-1][0] == "b"
            await until(lambda: lead_a.reason.startswith("standby"), message="a stands by")
            assert not lead_a.is_leader


async def test_a_sigkilled_holder_hands_over_at_once(database_url: str) -> None:
    name, _ = names()
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.lock_holder",
        database_url,
        name,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"active\n"
        active = asyncio.Event()

        async def work() -> None:
            active.set()
            await asyncio.Event().wait()

        leadership = Leadership(database_url, name, work, retry_seconds=0.1)
        async with following(leadership.run()):
            await until(lambda: leadership.reason.startswith("standby"), message="standby")
            assert not active.is_set()
            holder.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.wait_for(active.wait(), 10)
            assert time.monotonic() - killed < 2.0  # the next try, not a timeout
            assert leadership.is_leader
            sample = REGISTRY.get_sample_value("subscription_leader", {"subscription": name})
            assert sample == 1
        assert REGISTRY.get_sample_value("subscription_leader", {"subscription": name}) == 0
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


# --- what is read ----------------------------------------------------------------------------


async def test_a_category_subscription_sees_only_its_category(
    effects_table: asyncpg.Pool,
) -> None:
    pool = effects_table
    name, cat = names()
    everything_name = f"{name}-all"
    store = PostgresEventStore(pool)
    ours: list[uuid.UUID] = []
    streams = [f"{cat}-1", f"{cat}2-1", f"{cat}-2", f"other{cat}-1", f"{cat}_x-1", f"{cat}-1"]
    appended: list[tuple[str, uuid.UUID]] = []
    for stream in streams:
        for event_id in await append(store, stream, 2):
            appended.append((stream, event_id))
            if stream.split("-", 1)[0] == cat:
                ours.append(event_id)
    category_sub = Subscription(name, recorder("cat"), pool, category=cat, batch_size=4)
    all_sub = Subscription(
        everything_name, recorder("all", lambda s: s in streams), pool, batch_size=50
    )
    async with following(category_sub.follow(), all_sub.follow()):
        # The last event appended is in the category: once it is handled, all before it are.
        await until(lambda: _count(pool, name, len(ours)), message="the category's events")
        await until(lambda: _count(pool, everything_name, len(appended)), message="read_all")
    assert await handled_ids(pool, name) == ours
    assert await handled_ids(pool, everything_name) == [event_id for _, event_id in appended]


async def test_a_subscription_of_some_types_opens_only_those_and_moves_past_the_rest(
    effects_table: asyncpg.Pool,
) -> None:
    pool = effects_table
    name, cat = names()
    wanted, other = f"Wanted{cat}", f"Other{cat}"
    store = PostgresEventStore(pool)
    kinds = [wanted, other, other, wanted, other, other, other]
    ids = []
    for i, kind in enumerate(kinds):
        event = NewEvent(Unrecognised(type=kind, data={"n": i}))
        await store.append(f"{cat}-{i % 2}", [event])
        ids.append(event.id)
    seen: list[tuple[str, Any]] = []

    told: list[Position] = []  # what the after-commit effects heard (read your writes)

    async def handle(batch: Batch) -> None:
        seen.extend((e.type, e.event.data) for e in batch.events)
        position = batch.position
        batch.on_commit(lambda: told.append(position))
        await recorder("types")(batch)

    # Batches of 2 rows: some hold nothing of its types, and the checkpoint moves all the same.
    sub = Subscription(name, handle, pool, types=[wanted], batch_size=2, poll_interval=0.02)
    last = (await store.read_stream(f"{cat}-0"))[-1].position  # the last event appended
    async with following(sub.follow()):
        await until(
            lambda: _checkpoint_at_least(pool, name, last), message="past every event of ours"
        )
    assert seen == [(wanted, {"n": 0}), (wanted, {"n": 3})]
    assert await handled_ids(pool, name) == [ids[0], ids[3]]
    # Batches of none of its events were committed, and told of, too.
    assert told and (told[-1].transaction_id, told[-1].global_position) >= (
        last.transaction_id,
        last.global_position,
    )
    with pytest.raises(ValueError):
        Subscription(name, handle, pool, types=[wanted], category=cat)


async def _checkpoint_at_least(pool: asyncpg.Pool, name: str, position: Position) -> bool:
    at = await checkpoint(pool, name)
    return (at.transaction_id, at.global_position) >= (
        position.transaction_id,
        position.global_position,
    )


@pytest.mark.parametrize("read", ["read_category", "read_all", "read_all_of"], ids=lambda r: r)
async def test_a_row_committed_late_by_a_long_transaction_is_not_skipped(
    effects_table: asyncpg.Pool, read: str
) -> None:
    pool = effects_table
    name, cat = names()
    store = PostgresEventStore(pool)
    by_category = read == "read_category"
    mine = (lambda s: s.startswith(f"{cat}-")) if not by_category else (lambda _: True)
    subscription = Subscription(
        name,
        recorder("only", mine),
        pool,
        category=cat if by_category else None,
        types=["Happened"] if read == "read_all_of" else None,
        poll_interval=0.02,
    )
    async with following(subscription.follow()):
        await until(subscription.caught_up.is_set, message="caught up before the test")
        async with pool.acquire() as slow:
            tx = slow.transaction()
            await tx.start()
            # The long transaction takes its transaction id first, and commits last.
            [late] = await append(PostgresEventStore(conn=slow), f"{cat}-slow")
            [early] = await append(store, f"{cat}-fast")
            # Reads went on while `late` was open: `early` (committed, newer txid) was held
            # back, otherwise the checkpoint would have passed `late` for good.
            subscription.caught_up.clear()
            await until(subscription.caught_up.is_set, message="a read while it is open")
            assert await handled_ids(pool, name) == []
            await tx.commit()
        await until(lambda: _count(pool, name, 2), message="both handled")
    assert await handled_ids(pool, name) == [late, early]


async def test_a_restarted_subscription_resumes_from_its_checkpoint(
    effects_table: asyncpg.Pool,
) -> None:
    pool = effects_table
    name, cat = names()
    store = PostgresEventStore(pool)
    first_ids = await append(store, f"{cat}-1", 5)
    first = Subscription(name, recorder("first"), pool, category=cat, batch_size=2)
    async with following(first.follow()):
        await until(lambda: _count(pool, name, 5), message="first run")
    reached = await checkpoint(pool, name)
    later_ids = await append(store, f"{cat}-2", 3)
    second = Subscription(name, recorder("second"), pool, category=cat, batch_size=2)
    assert await second.position() == reached
    async with following(second.follow()):
        await until(lambda: _count(pool, name, 8), message="second run")
    assert await effects(pool, name) == [("first", i) for i in first_ids] + [
        ("second", i) for i in later_ids
    ]


async def test_wake_reads_at_once_without_waiting_for_the_poll(
    effects_table: asyncpg.Pool,
) -> None:
    pool = effects_table
    name, cat = names()
    subscription = Subscription(name, recorder("only"), pool, category=cat, poll_interval=120)
    async with following(subscription.follow()):
        await until(subscription.caught_up.is_set, message="caught up")
        ids = await append(PostgresEventStore(pool), f"{cat}-1")
        subscription.wake()
        await until(lambda: _count(pool, name, 1), within=10, message="handled after wake")
    assert await handled_ids(pool, name) == ids


async def test_polls_that_find_nothing_wait_longer_and_rows_bring_the_pace_back(
    effects_table: asyncpg.Pool,
) -> None:
    """Each read in a row that finds nothing doubles the wait before the next, up to the
    ceiling; a read that finds rows brings it back to poll_interval."""
    pool = effects_table
    name, cat = names()
    subscription = Subscription(
        name, recorder("one"), pool, category=cat, poll_interval=0.1, max_idle_interval=1.0
    )
    waits = []
    for _ in range(6):
        assert await subscription.step() == 0
        waits.append(subscription.idle_wait())
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    await append(PostgresEventStore(pool), f"{cat}-1")
    assert await subscription.step() == 1
    assert subscription.idle_wait() == 0.1
    # Never shorter than the poll interval, whatever the ceiling says.
    slow = Subscription(name, recorder("one"), pool, poll_interval=5.0, max_idle_interval=1.0)
    slow.quiet = 10
    assert slow.idle_wait() == 5.0


async def test_wake_cuts_even_the_longest_idle_wait(effects_table: asyncpg.Pool) -> None:
    pool = effects_table
    name, cat = names()
    subscription = Subscription(
        name, recorder("only"), pool, category=cat, poll_interval=0.01, max_idle_interval=120
    )
    subscription.quiet = 40  # long quiet already: its next wait is the ceiling's 120 s
    async with following(subscription.follow()):
        await until(subscription.caught_up.is_set, message="caught up")
        assert subscription.idle_wait() == 120
        ids = await append(PostgresEventStore(pool), f"{cat}-1")
        subscription.wake()
        await until(lambda: _count(pool, name, 1), within=10, message="handled after wake")
    assert await handled_ids(pool, name) == ids


async def test_metrics_count_events_and_lag_per_subscription(
    effects_table: asyncpg.Pool,
) -> None:
    pool = effects_table
    name, cat = names()
    await append(PostgresEventStore(pool), f"{cat}-1", 7)
    subscription = Subscription(name, recorder("only"), pool, category=cat, batch_size=3)
    labels = {"subscription": name}
    async with following(subscription.follow()):
        await until(lambda: _count(pool, name, 7), message="handled")
        # Caught up after that: a read may also have found nothing before, while another
        # test's older transaction held the horizon back (the server is shared).
        subscription.caught_up.clear()
        await until(subscription.caught_up.is_set)
    assert REGISTRY.get_sample_value("subscription_events_processed_total", labels) == 7
    assert REGISTRY.get_sample_value("subscription_lag_seconds", labels) == 0


# --- outages and stopping --------------------------------------------------------------------


def _host_port(database_url: str) -> tuple[str, int]:
    location = database_url.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = location.partition(":")
    return host, int(port or 5432)


@pytest_asyncio.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    started = await TcpProxy(*_host_port(database_url)).start()
    try:
        yield started
    finally:
        await started.close()


async def test_an_outage_backs_off_within_bounds_and_the_subscription_resumes(
    effects_table: asyncpg.Pool, database_url: str, proxy: TcpProxy
) -> None:
    name, cat = names()
    store = PostgresEventStore(effects_table)
    via = await create_pool(proxy.url(database_url), min_size=0, max_size=2)
    subscription = Subscription(
        name, recorder("only"), via, category=cat, retry_seconds=0.02, max_backoff=0.2
    )
    try:
        async with following(subscription.follow()):
            first = await append(store, f"{cat}-1")
            await until(lambda: _count(effects_table, name, 1), message="before the outage")
            proxy.cut("refuse")
            during = await append(store, f"{cat}-1")
            await until(lambda: subscription.failures >= 6, message="failing while down")
            assert subscription.retry_delay == 0.2  # doubled up to the bound, not beyond
            proxy.restore()
            await until(lambda: _count(effects_table, name, 2), message="resumed")
            assert subscription.failures == 0
        assert await handled_ids(effects_table, name) == first + during
    finally:
        await via.close()


@pytest.mark.parametrize("outage", ["refuse", "blackhole"])
async def test_a_stop_request_is_not_held_hostage_by_an_outage(
    effects_table: asyncpg.Pool, database_url: str, proxy: TcpProxy, outage: str
) -> None:
    """Long backoffs and a database that hangs: cancelling still ends everything at once."""
    name, cat = names()
    dsn = proxy.url(database_url)
    via = await create_pool(dsn, min_size=0, max_size=2)
    subscription = Subscription(
        name, recorder("only"), via, category=cat, retry_seconds=60, max_backoff=60
    )
    leadership = Leadership(dsn, name, subscription.follow, retry_seconds=60, check_seconds=0.1)
    task = asyncio.create_task(leadership.run())
    try:
        await until(lambda: leadership.is_leader, message="leading")
        await until(subscription.caught_up.is_set, message="caught up")
        if outage == "refuse":
            proxy.cut("refuse")
            # Lost the lock connection: now in a 60 s backoff.
            await until(lambda: leadership.failures >= 1, message="noticed the outage")
        else:
            proxy.cut("blackhole")
            # The lock check (every 0.1 s) and the next poll now wait for answers that never
            # come (up to their 10 s and 30 s timeouts).
            await until(lambda: proxy.swallowed > 0, message="a call is hanging")
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2.0
        assert not leadership.is_leader
    finally:
        task.cancel()
        proxy.restore()
        await asyncio.wait_for(via.close(), 10)


# --- the relay's checkpoint moves into subscription_checkpoints -------------------------------


async def test_the_relays_checkpoint_row_is_honoured_after_the_upgrade(
    fresh_database_url: str,
) -> None:
    assert await migrate(fresh_database_url, up_to="0003_append_to_streams") == [
        "0001_events",
        "0002_webhook_relay",
        "0003_append_to_streams",
    ]
    pool = await create_pool(fresh_database_url, min_size=1, max_size=3)
    try:
        store = PostgresEventStore(pool)
        for i in range(4):
            await append(store, f"conversation-{i}")
        recorded = await _read_all(store)
        assert len(recorded) == 4
        # A deployed relay that has handled the first two events.
        reached = recorded[1].position
        await pool.execute(
            "INSERT INTO webhook_relay_checkpoints (name, transaction_id, global_position)"
            " VALUES ('webhook-relay', $1, $2)",
            reached.transaction_id,
            reached.global_position,
        )

        assert (await migrate(fresh_database_url))[0] == "0004_subscriptions"

        assert await pool.fetchval("SELECT to_regclass('webhook_relay_checkpoints')") is None
        assert await RelayStore(pool).checkpoint() == reached
        handled: list[RecordedEvent] = []

        async def handle(batch: Batch) -> None:
            batch.on_commit(lambda: handled.extend(batch.events))

        relay = Subscription("webhook-relay", handle, pool)
        async with following(relay.follow()):
            await until(lambda: len(handled) >= 2, message="the events after the checkpoint")
            await until(relay.caught_up.is_set)
        assert [e.id for e in handled] == [e.id for e in recorded[2:]]  # none again, none skipped
        assert await RelayStore(pool).checkpoint() == recorded[-1].position
    finally:
        await pool.close()


async def _read_all(store: PostgresEventStore) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    after: Position = START
    deadline = time.monotonic() + 10
    while len(out) < 4 and time.monotonic() < deadline:
        page = await store.read_all(after)
        out.extend(page)
        after = page[-1].position if page else after
        if not page:
            await asyncio.sleep(0.05)
    return out


async def test_an_idle_poll_is_one_query_and_a_rewind_is_found_at_the_next_commit(
    effects_table: asyncpg.Pool,
) -> None:
    """The subscription knows where its checkpoint is between batches (it wrote it), so an
    idle poll reads only the log (the table again every CHECKPOINT_REFRESH seconds); a
    checkpoint moved behind its back (a rewind) is found by the fence at the next batch,
    read again, and the batch is read from there."""
    pool = effects_table
    name, cat = names()
    store = PostgresEventStore(pool)
    first = await append(store, f"{cat}-1")
    subscription = Subscription(name, recorder("one"), pool, category=cat)
    assert await subscription.step() == 1
    assert await subscription.step() == 0
    async with pool.acquire() as conn:
        # Watch the queries of an idle step on its connection: the checkpoint is not read.
        seen: list[str] = []

        def log_query(record: Any) -> None:
            seen.append(record.query)

        conn.add_query_logger(log_query)
        quiet = Subscription(name, recorder("one"), _OnePool(conn), category=cat)  # type: ignore[arg-type]
        quiet._after, quiet._after_read_at = subscription._after, time.monotonic()
        assert await quiet.step() == 0
        conn.remove_query_logger(log_query)
    assert seen, "the idle step read the log"
    assert not any("subscription_checkpoints" in q for q in seen), seen
    # Rewound to the start behind its back: the next batch fails the fence, and the one
    # after reads from the start again.
    await pool.execute(
        "UPDATE subscription_checkpoints SET transaction_id = '0', global_position = 0"
        " WHERE name = $1",
        name,
    )
    second = await append(store, f"{cat}-1")
    try:
        handled = await subscription.step()
    except CheckpointMoved:  # found by the fence (unless its refresh came first)
        handled = await subscription.step()
    assert handled == 2
    assert await handled_ids(pool, name) == [*first, *first, *second]


class _OnePool:
    """A pool of one connection (the subscription acquires and releases it)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def acquire(self) -> Any:
        conn = self.conn

        class _Held:
            async def __aenter__(self) -> asyncpg.Connection:
                return conn

            async def __aexit__(self, *_: object) -> None:
                return None

        return _Held()
