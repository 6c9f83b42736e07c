"""At most one active instance per name: a PostgreSQL session advisory lock on its own
connection, keyed by the name.

Every other instance is a hot standby that keeps trying the lock. The lock belongs to the
holder's session, so a holder that dies (even SIGKILLed) releases it with its connection and
a standby takes over within `retry_seconds`. The holder checks its lock connection every
`check_seconds`; when it is lost (database restart, terminated backend) the active work is
cancelled, and the lock is taken again once the database answers.

Leadership alone leaves a short overlap after a lost connection: a standby may already hold
the lock while the old holder has not noticed yet. Subscriptions therefore also fence their
checkpoint (see subscription.py), so the overlap can never commit a batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from shared.observability import metrics

log = logging.getLogger("eventstore.leadership")

# The two-key form of advisory locks is a key space of its own: these locks can never collide
# with the single-key ones (per-stream appends, migrations), whatever the names hash to.
LOCK_SPACE = 7243086
_TRY_LOCK = "SELECT pg_try_advisory_lock($1, hashtext($2))"


def backoff(failures: int, first: float, limit: float) -> float:
    """Doubling from `first`, never above `limit`: a long outage is retried every `limit`."""
    if failures <= 0:
        return first
    return min(limit, first * 2 ** (failures - 1))


class Leadership:
    """Runs `active()` only while this process holds the lock for `name`."""

    def __init__(
        self,
        dsn: str,
        name: str,
        active: Callable[[], Awaitable[None]],
        *,
        retry_seconds: float = 0.5,
        check_seconds: float = 1.0,
        max_backoff: float = 10.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.active = active
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.is_leader = False
        self.reason = "starting"
        self.lock_pid: int | None = None  # the lock connection's backend, while leading
        self.failures = 0  # in a row: the database unreachable, or the work failing
        self.retry_delay = 0.0  # the last wait after a failure

    async def run(self) -> None:
        """Until cancelled: wait for the lock, run the active work while it is held."""
        while True:
            conn: asyncpg.Connection | None = None
            work: asyncio.Task[None] | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
                self.reason = f"standby: another instance holds the lock for {self.name}"
                while not await conn.fetchval(
                    _TRY_LOCK, LOCK_SPACE, self.name, timeout=self.connect_timeout
                ):
                    self.failures = 0  # the database answers; someone else is active
                    await asyncio.sleep(self.retry_seconds)
                self.failures = 0
                self._lead(conn)
                work = asyncio.create_task(self.active())
                while True:
                    done, _ = await asyncio.wait([work], timeout=self.check_seconds)
                    if done:
                        work.result()  # raises what stopped it
                        raise RuntimeError(f"the active work of {self.name} ended")
                    # Still connected means still holding: a session lock ends only with
                    # its session (or an unlock, which we never issue).
                    await conn.fetchval("SELECT 1", timeout=self.connect_timeout)
            except Exception as exc:
                self.failures += 1
                self.reason = f"paused: {type(exc).__name__}"
                log.warning(
                    "not active; will try the lock again",
                    extra={
                        "fields": {
                            "subscription": self.name,
                            "error": f"{type(exc).__name__}: {exc}"[:300],
                        }
                    },
                )
            finally:
                await self._step_down(conn, work)
            self.retry_delay = backoff(self.failures, self.retry_seconds, self.max_backoff)
            await asyncio.sleep(self.retry_delay)

    def _lead(self, conn: asyncpg.Connection) -> None:
        self.lock_pid = conn.get_server_pid()
        self.is_leader = True
        self.reason = "ok"
        metrics.subscription_leader.labels(self.name).set(1)
        log.info("holding the lock: active", extra={"fields": {"subscription": self.name}})

    async def _step_down(
        self, conn: asyncpg.Connection | None, work: asyncio.Task[None] | None
    ) -> None:
        was_leader = self.is_leader
        self.is_leader = False
        self.lock_pid = None
        metrics.subscription_leader.labels(self.name).set(0)
        if work is not None and not work.done():
            work.cancel()
            # asyncio.wait, not `await work`: our own cancellation (a stop request) must
            # still reach the caller, and the work's CancelledError must not.
            await asyncio.wait([work])
        if work is not None and not work.cancelled():
            work.exception()  # retrieved: already logged above
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=1.0)  # bounded: terminates the socket after that
        if was_leader:
            log.info("stepped down", extra={"fields": {"subscription": self.name}})
