"""Group commit for one process: the appends its handlers make at the same moment go to the
database as one `append_to_streams` statement, one transaction and one WAL flush, instead
of one each.

Under load a consumer has dozens of messages in flight (its prefetch window, across lanes),
and each used to make its own round trip and commit. Here every append made within one turn
of the event loop is collected, and sent together when the loop comes round: nothing waits
for a timer, so an append alone is sent as soon as it would have been.

Each caller's writes keep their own meaning. The statement is one transaction: when it is
refused for one caller's reason (another writer was first, a row the store cannot hold, a
deadlock with someone's explicit transaction), nothing of it was written, and each caller's
writes are sent again on their own, so that each caller gets its own answer. An outage is
every caller's: they all get StoreUnavailable, as each would have alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from shared.eventstore import Appended, StoreUnavailable
from shared.observability import metrics

log = logging.getLogger("eventstore")

W = TypeVar("W")  # one stream's write, as the store has prepared it
Result = list[list[Appended]]


class Coalescer(Generic[W]):
    """Sends what `submit` collects in one turn of the loop through `write` (the store's
    own statement for several streams), in one call when there are several."""

    def __init__(self, write: Callable[[list[W]], Awaitable[Result]]) -> None:
        self.write = write
        self._pending: list[tuple[list[W], asyncio.Future[Result]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._sending: set[asyncio.Future[None]] = set()

    async def submit(self, writes: list[W]) -> Result:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A store used from another loop (a tool, a test): what a closed loop left
            # pending will never be sent by it.
            for _, stale in self._pending:
                if not stale.get_loop().is_closed():
                    stale.cancel()
            self._pending, self._scheduled, self._loop = [], False, loop
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((writes, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        batch = [(w, f) for w, f in batch if not f.done()]  # a caller cancelled meanwhile
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)  # a strong reference while it runs
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list[W], asyncio.Future[Result]]]) -> None:
        try:
            await self._send_all(batch)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("coalesced appends failed")
            for _, future in batch:
                _fail(future, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _send_all(self, batch: list[tuple[list[W], asyncio.Future[Result]]]) -> None:
        metrics.eventstore_coalesced_writes.observe(len(batch))
        if len(batch) == 1:
            await _settle(batch[0][1], self.write(batch[0][0]))
            return
        together = [w for writes, _ in batch for w in writes]
        try:
            results = await self.write(together)
        except StoreUnavailable as exc:
            for _, future in batch:
                _fail(future, exc)
            return
        except Exception:
            # Refused for someone's reason (nothing was written): each on its own, but not
            # for a caller that gave up meanwhile.
            await asyncio.gather(*(_settle(f, self.write(w)) for w, f in batch if not f.done()))
            return
        at = 0
        for writes, future in batch:
            if not future.done():
                future.set_result(results[at : at + len(writes)])
            at += len(writes)


async def _settle(future: asyncio.Future[Result], write: Awaitable[Result]) -> None:
    try:
        result = await write
    except Exception as exc:
        _fail(future, exc)
    else:
        if not future.done():
            future.set_result(result)


def _fail(future: asyncio.Future[Result], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()  # the loop is going away
    else:
        future.set_exception(exc)
