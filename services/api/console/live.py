"""The inbox's live feed: `GET /console/events`, server-sent events that say "the
conversations read model moved, read again". No data travels in them: the console reads
what changed through `/v1`, authorised as ever, so the feed cannot show anyone anything.

One watcher per api process follows the read model's checkpoint (a point query every
POLL seconds, only while someone listens), so it works whichever api instance runs the
read model. Each stream lasts at most LIFETIME seconds (the browser's EventSource
reconnects at once), checks its session at every heartbeat, and ends when the api shuts
down, so a stream never holds a restart up."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
from aiohttp import web

from services.api.auth import SESSION_COOKIE, find_session
from services.api.projections import conversations

POLL = 0.1
HEARTBEAT = 15.0
LIFETIME = 120.0


class Changes:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.version = 0
        self.listeners = 0
        self.closing = asyncio.Event()
        self._moved = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        seen = None
        while self.listeners > 0 and not self.closing.is_set():
            try:
                position = await self.pool.fetchval(
                    "SELECT global_position FROM subscription_checkpoints WHERE name = $1",
                    conversations.NAME,
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                position = seen  # the database away: the streams wait, the pages poll
            if position != seen:
                seen = position
                async with self._moved:
                    self.version += 1
                    self._moved.notify_all()
            await asyncio.sleep(POLL)
        self._task = None

    def _ensure(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def next(self, after: int, within: float) -> int:
        """The version after `after`, or `after` again when `within` seconds passed first."""
        async with self._moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._moved.wait_for(lambda: self.version != after or self.closing.is_set()),
                    within,
                )
            return self.version

    async def close(self, _: web.Application | None = None) -> None:
        self.closing.set()
        async with self._moved:
            self._moved.notify_all()


def handler(pool: asyncpg.Pool, changes: Changes) -> web.Handler:
    async def events(request: web.Request) -> web.StreamResponse:
        value = request.cookies.get(SESSION_COOKIE, "")
        if await find_session(pool, value) is None:
            return web.Response(status=401, text="not signed in")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold the events back
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        changes.listeners += 1
        changes._ensure()
        started = time.monotonic()
        try:
            version = changes.version
            while not changes.closing.is_set():
                left = LIFETIME - (time.monotonic() - started)
                if left <= 0:
                    break
                moved = await changes.next(version, min(HEARTBEAT, left))
                if changes.closing.is_set():
                    break
                if moved != version:
                    version = moved
                    await response.write(b"event: changed\ndata: {}\n\n")
                else:
                    if await find_session(pool, value) is None:
                        break  # signed out, or the user deleted
                    await response.write(b": ping\n\n")
        except ConnectionResetError:
            pass  # the page went away
        finally:
            changes.listeners -= 1
        return response

    return events
