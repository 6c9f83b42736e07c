"""Read your writes: after a write answered 2xx, the caller's next request must see it, so
the api waits, before answering, until its read models have passed the write's place in the
log. In this process, each committed batch says so at once; the checkpoints table covers a
read model whose active instance is another process."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from services.api.errors import ApiError
from shared.eventstore import START, Position
from shared.eventstore.subscription import Subscription

WAIT_SECONDS = 10.0
# How long a lookup that found nothing waits for the read models to reach the log's end.
SETTLE_SECONDS = 2.0


class Consistency:
    def __init__(self, pool: asyncpg.Pool, local: dict[str, Subscription]) -> None:
        self.pool = pool
        self.local = local
        self.reached: dict[str, Position] = {}
        self._changed = asyncio.Event()

    def committed(self, name: str, position: Position) -> None:
        if position > self.reached.get(name, START):
            self.reached[name] = position
        self._changed.set()

    def forget(self) -> None:
        """After a rebuild the read models start again: what they reached is unknown."""
        self.reached.clear()

    async def wait(
        self, position: Position | None, names: tuple[str, ...], within: float = WAIT_SECONDS
    ) -> None:
        if position is not None and not await self.passed(position, names, within):
            raise ApiError(
                503,
                "read_models_behind",
                "the write is recorded but not yet readable; repeat the request with the"
                " same Idempotency-Key to get its answer",
                {"Retry-After": "1"},
            )

    async def passed(self, position: Position, names: tuple[str, ...], within: float) -> bool:
        """Whether these read models passed `position` within `within` seconds (waking the
        ones of this process)."""
        deadline = time.monotonic() + within
        delay = 0.005
        while True:
            behind = [n for n in names if self.reached.get(n, START) < position]
            if not behind:
                return True
            rows = await self.pool.fetch(
                "SELECT name, transaction_id, global_position FROM subscription_checkpoints"
                " WHERE name = ANY($1::text[])",
                behind,
            )
            for row in rows:
                self.committed(row["name"], Position(row["transaction_id"], row["global_position"]))
            behind = [n for n in behind if self.reached.get(n, START) < position]
            if not behind:
                return True
            for name in behind:
                if name in self.local:
                    self.local[name].wake()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(delay, left))
            except TimeoutError:
                pass
            delay = min(delay * 2, 0.05)

    async def settle(self, names: tuple[str, ...], within: float = SETTLE_SECONDS) -> bool:
        """Wait until these read models have read the log as far as it goes now (at most
        `within`; False if they had not). A lookup that found nothing asks before it
        answers 404: a conversation a webhook opened a moment ago is then found, although
        idle read models poll only every second."""
        row = await self.pool.fetchrow(
            "SELECT transaction_id::text AS txid, global_position FROM events"
            " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
        )
        if row is None:
            return True
        return await self.passed(Position(int(row["txid"]), row["global_position"]), names, within)
