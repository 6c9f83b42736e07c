"""Named, checkpointed subscriptions to the event store: the one runner every read model and
the webhook relay use.

A subscription reads the log after its checkpoint, either all of it (`read_all`) or one
category (`read_category`), and hands each batch to its handler inside a transaction. The
checkpoint moves in that same transaction, so the handler's own writes and the checkpoint
commit together or not at all: a failed batch commits nothing and is read again.

    async def project(batch: Batch) -> None:
        for event in batch.events:
            await batch.conn.execute("INSERT INTO ... ON CONFLICT DO NOTHING", ...)

    subscription = Subscription("console.conversations", project, pool, category="inbox")
    await Leadership(dsn, subscription.name, subscription.follow).run()

- **Order and no skips.** Reads follow (transaction id, global position) and take only rows
  older than every open transaction, so a row committed late by a long transaction is still
  handled, in its place.
- **Polling is the source of truth.** `wake()` cuts the wait after an in-process append;
  nothing depends on it. A subscription that keeps finding nothing polls less often, its
  wait doubling from `poll_interval` to `max_idle_interval` (1 s): an idle stack costs
  a few queries a second, not a hundred, and the first event after a quiet spell is seen
  within a second (at once when appended in the same process).
- **One active instance per name.** Run `follow()` under `Leadership` (leadership.py). The
  checkpoint is also fenced: a batch commits only if the checkpoint is still where that batch
  was read from, so an instance that lost the lock without noticing yet cannot commit a batch
  its successor handles too.
- **Outages.** Any failure backs off, doubling up to `max_backoff`; every wait is a plain
  await, so cancelling the task (a stop request) ends it at once.

Events are opaque here: the runner looks at positions and times, never at what an event says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import asyncpg

from shared.eventstore import START, Event, Position, RecordedEvent
from shared.eventstore.leadership import backoff
from shared.eventstore.mapper import Mapper
from shared.eventstore.postgres import PostgresEventStore, Scan
from shared.observability import metrics

log = logging.getLogger("eventstore.subscription")


@dataclass
class Batch:
    """What a handler gets: the events, in order, and the connection whose transaction the
    checkpoint commits in. Write through `conn` (or `store`, for appends) to commit with it."""

    subscription: str
    events: list[RecordedEvent]
    conn: asyncpg.Connection
    mapper: Mapper | None = None
    # How far the read looked: past `events` when a subscription of some types only skipped
    # rows of others after them (the checkpoint moves that far).
    through: Position | None = None
    _after_commit: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def store(self) -> PostgresEventStore:
        """The event store inside this batch's transaction (with the subscription's mapper)."""
        return PostgresEventStore(conn=self.conn, mapper=self.mapper)

    @property
    def position(self) -> Position:
        """Where the checkpoint will be once this batch commits."""
        return self.through or self.events[-1].position

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch has committed (never if it fails): for in-memory
        effects, such as waking a dispatcher, that must not run for a batch rolled back."""
        self._after_commit.append(callback)


Handler = Callable[[Batch], Awaitable[None]]


CHECKPOINT_REFRESH = 2.0  # seconds an idle subscription trusts where it knows it is
MAX_IDLE_INTERVAL = 1.0  # the longest wait between polls that find nothing


class CheckpointMoved(Exception):
    """The checkpoint is no longer where this batch was read from: another instance (or an
    operator rewinding it) moved it. The batch is rolled back and read again."""


async def checkpoint(db: asyncpg.Pool | asyncpg.Connection, name: str) -> Position:
    """Where the subscription `name` has got to (START when it has never committed)."""
    row = await db.fetchrow(
        "SELECT transaction_id, global_position FROM subscription_checkpoints WHERE name = $1",
        name,
    )
    return Position(row["transaction_id"], row["global_position"]) if row else START


# Compare and set: moves the checkpoint only from the position the batch was read after. A
# row another instance is moving is locked, so the loser waits for its commit, then finds
# the position changed and returns nothing.
_ADVANCE = """
INSERT INTO subscription_checkpoints AS c (name, transaction_id, global_position, updated_at)
VALUES ($1, $4, $5, now())
ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id,
    global_position = EXCLUDED.global_position, updated_at = now()
WHERE (c.transaction_id, c.global_position) = ($2, $3)
RETURNING 1
"""
# The same for a subscription whose writes are derived data only (durable=False): its
# transaction commits without waiting for the WAL flush. A database crash may then lose its
# last batches, their checkpoint with them (one transaction), and they are read again.
_ADVANCE_LAZILY = f"""
WITH moved AS ({_ADVANCE.strip()})
SELECT (SELECT 1 FROM moved), set_config('synchronous_commit', 'off', true)
"""


class Subscription:
    """A named, checkpointed consumer of the event store. `follow()` is its loop."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        pool: asyncpg.Pool,
        *,
        category: str | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retry_seconds: float = 0.5,
        max_backoff: float = 10.0,
        mapper: Mapper | None = None,
        types: Iterable[type[Event] | str] | None = None,
        max_idle_interval: float = MAX_IDLE_INTERVAL,
        durable: bool = True,
    ) -> None:
        """`pool` from shared.eventstore.postgres.create_pool (it decodes jsonb). `mapper`:
        the one the service's event store uses (a cipher, upcasters), the default if None.
        `types`: the only events (classes or type names) the handler wants, of the whole
        log (not with `category`); its batches may then hold no event at all;
        the rest is passed over unopened, the checkpoint moving past it all the same.
        `max_idle_interval`: how long the wait between polls may grow while they find
        nothing (never shorter than `poll_interval`). `durable=False`: the handler only
        writes what the events can rebuild (a read model, with no effect outside its
        tables), so its commits need not wait for the WAL flush; a crash of the database
        may cost it its last batches, which it then reads again."""
        if types is not None and category is not None:
            raise ValueError("a subscription reads a category or some types, not both")
        self.name = name
        self.types = (
            sorted({t if isinstance(t, str) else t.type_name() for t in types})
            if types is not None
            else None
        )
        self.mapper = mapper
        self.handler = handler
        self._advance = _ADVANCE if durable else _ADVANCE_LAZILY
        self.pool = pool
        self.category = category
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_idle_interval = max(poll_interval, max_idle_interval)
        self.quiet = 0  # reads in a row that found nothing: the wait doubles with each
        self.retry_seconds = retry_seconds
        self.max_backoff = max_backoff
        self.caught_up = asyncio.Event()  # set whenever a read finds nothing new
        self.failures = 0  # in a row; 0 after a batch commits or a read finds nothing
        self.retry_delay = 0.0  # the last wait after a failure
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        # Where this instance knows its checkpoint is (it committed it, or read it): read
        # from the table again at the start, after any failure and every
        # CHECKPOINT_REFRESH seconds, so an idle poll is mostly one query, not two. A
        # checkpoint moved by someone else (another instance, a rewind) is found at the
        # next commit by the fence, or at the next refresh when idle.
        self._after: Position | None = None
        self._after_read_at = 0.0

    def wake(self) -> None:
        """Read now rather than at the next poll (after an append in this process)."""
        self._wake.set()

    async def position(self) -> Position:
        return await checkpoint(self.pool, self.name)

    async def follow(self) -> None:
        """Until cancelled: read, handle, commit; wait a poll when caught up, back off after
        a failure."""
        self._after = None  # a leader again: another may have moved it meanwhile
        while True:
            try:
                handled = await self.step()
            except Exception as exc:
                self.failures += 1
                self.retry_delay = backoff(self.failures, self.retry_seconds, self.max_backoff)
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                metrics.subscription_failures.labels(self.name).inc()
                log.warning(
                    "batch failed; nothing committed, reading it again",
                    extra={
                        "fields": {
                            "subscription": self.name,
                            "error": self.last_error,
                            "failures": self.failures,
                            "retry_in": self.retry_delay,
                        }
                    },
                )
                await asyncio.sleep(self.retry_delay)
                continue
            self.failures = 0
            if handled < self.batch_size:
                await self._idle()

    async def step(self) -> int:
        """One batch: returns how many rows of the log it read (0 when caught up)."""
        try:
            handled = await self._step()
        except BaseException:
            self._after = None  # whatever happened, read it from the table next time
            raise
        self.quiet = 0 if handled else self.quiet + 1
        return handled

    async def _step(self) -> int:
        async with self.pool.acquire() as conn:
            after = self._after
            if after is None or time.monotonic() - self._after_read_at > CHECKPOINT_REFRESH:
                after = await checkpoint(conn, self.name)
                self._after, self._after_read_at = after, time.monotonic()
            scan = await self._read(PostgresEventStore(conn=conn, mapper=self.mapper), after)
            if scan.through is None or scan.oldest is None:
                metrics.subscription_lag.labels(self.name).set(0)
                self.caught_up.set()
                return 0
            events = scan.events
            # The oldest event not yet handled: this grows while a batch keeps failing.
            metrics.subscription_lag.labels(self.name).set(
                max(0.0, time.time() - scan.oldest.timestamp())
            )
            batch = Batch(self.name, events, conn, self.mapper, scan.through)
            async with conn.transaction():
                # Fence first: a stale instance stops here (after waiting for the winner's
                # commit) before its handler writes anything.
                moved = await conn.fetchval(
                    self._advance,
                    self.name,
                    after.transaction_id,
                    after.global_position,
                    batch.position.transaction_id,
                    batch.position.global_position,
                )
                if moved is None:
                    raise CheckpointMoved(f"{self.name}: the checkpoint moved since {after}")
                # Also with no events (a subscription of some types passing only others):
                # a handler's after-commit effects (read your writes) hear of the move.
                await self.handler(batch)
        self._after = batch.position
        metrics.subscription_events.labels(self.name).inc(len(events))
        for callback in batch._after_commit:
            try:
                callback()
            except Exception:  # committed: reading the batch again would not undo it
                log.exception(
                    "after-commit callback failed", extra={"fields": {"subscription": self.name}}
                )
        return scan.scanned

    async def _read(self, store: PostgresEventStore, after: Position) -> Scan:
        if self.types is not None:
            return await store.read_all_of(self.types, after=after, limit=self.batch_size)
        if self.category is None:
            events = await store.read_all(after=after, limit=self.batch_size)
        else:
            events = await store.read_category(self.category, after=after, limit=self.batch_size)
        if not events:
            return Scan([], None, None, 0)
        return Scan(events, events[-1].position, events[0].recorded_at, len(events))

    def idle_wait(self) -> float:
        """The wait before the next poll: `poll_interval` after a read that found rows,
        doubling with each read in a row that found nothing, up to `max_idle_interval`."""
        if self.quiet <= 1:
            return self.poll_interval
        return min(self.max_idle_interval, self.poll_interval * 2 ** min(self.quiet - 1, 30))

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), self.idle_wait())
        except TimeoutError:
            pass
        self._wake.clear()
