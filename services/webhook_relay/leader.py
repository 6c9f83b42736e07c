"""One active relay at a time: a PostgreSQL session advisory lock held on its own connection.

A second relay process is a hot standby: it waits for the lock. The lock goes with the
holder's connection, so a crashed (even SIGKILLed) relay hands over at once. When the lock
connection is lost (database restart), the active work is stopped and started again once
the lock is held again, so two relays never deliver side by side for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.webhook_relay import metrics

log = logging.getLogger("webhook_relay.leader")
LOCK_KEY = 7243085
RETRY_SECONDS = 1.0
CHECK_SECONDS = 2.0


class Leadership:
    def __init__(self, dsn: str, active: Callable[[], Awaitable[None]]) -> None:
        self.dsn = dsn
        self.active = active
        self.is_leader = False
        self.reason = "starting"

    async def run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            work: asyncio.Task[None] | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
                self.reason = "standby: another relay holds the lock"
                while True:
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                        break
                    await asyncio.sleep(RETRY_SECONDS)
                self.is_leader = True
                self.reason = "ok"
                metrics.leader.set(1)
                log.info("active relay")
                work = asyncio.create_task(self.active())
                while True:
                    done, _ = await asyncio.wait([work], timeout=CHECK_SECONDS)
                    if done:
                        work.result()  # raises what stopped it
                        raise RuntimeError("the relay's work ended")
                    await conn.fetchval("SELECT 1", timeout=5)  # still holding the lock?
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.reason = f"lost the database: {type(exc).__name__}"
                log.warning(
                    "relay paused; will take over again",
                    extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300]}},
                )
            finally:
                self.is_leader = False
                metrics.leader.set(0)
                if work is not None and not work.done():
                    work.cancel()
                    with contextlib.suppress(BaseException):
                        await work
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 5)
            await asyncio.sleep(RETRY_SECONDS)
