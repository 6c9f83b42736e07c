"""Conversations kept in memory between a customer's messages, and the unit of work that
commits one step of one.

Rebuilding a conversation means reading and folding its whole stream, which grows with every
turn. The state a handler leaves behind is kept instead, and the customer's next message
starts from it after reading only the events recorded since (usually none): another process
may have moved the conversation on while this one was not consuming its queue (a fail-over
and back), and decisions taken without an append (an unrequested media result, a message
waiting for a file) must see that. A writer racing in after that read is caught by the
expected version on append (or by its events coming back as duplicates): the state is
dropped and the handler runs once more from the stream.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from services.conversation.domain import Conversation, event_id, evolve, fold
from services.conversation.outputs import mark_read, outputs
from shared.broker.bus import Context, Publish
from shared.events.conversation import conversation_stream
from shared.eventstore import Event, EventStore, NewEvent, WrongExpectedVersion
from shared.schemas import SendMessage

Steps = AsyncIterator[list[Publish]]


class StaleConversation(Exception):
    """An append found its events already stored: the state it started from was behind."""


async def load(store: EventStore, conversation_id: str) -> Conversation:
    """The conversation as its stream says now."""
    events = await store.read_stream(conversation_stream(conversation_id))
    return fold(conversation_id, [(e.version, e.event) for e in events])


class Step:
    """A unit of work: the events one step decides, applied to the state at once (the
    responder reads them), appended together with the version the state was at, and the
    commands they imply, returned for publishing only after the commit. Metadata
    (correlation, causation, trace) is stamped here, once."""

    def __init__(self, store: EventStore, state: Conversation, ctx: Context) -> None:
        self.store = store
        self.state = state
        self.ctx = ctx
        self.expected = state.version
        self.events: list[Event] = []
        # A customer message still to mark read (its wamid): its reply carries the mark, or
        # the commit publishes one (no reply went out: a handoff, a silent bot).
        self.read = ""

    def record(self, events: list[Event]) -> list[Event]:
        for event in events:
            evolve(self.state, event)
        self.events.extend(events)
        return events

    async def commit(self) -> list[Publish]:
        if not self.events:
            return []
        metadata = self.ctx.metadata()
        cid = self.state.conversation_id
        appended = await self.store.append(
            conversation_stream(cid),
            [NewEvent(e, event_id(cid, e), metadata) for e in self.events],
            expected_version=self.expected,
        )
        if any(a.duplicate for a in appended):
            raise StaleConversation("the step was already recorded")
        self.state.version = appended[-1].stream_version
        published = [p for e in self.events for p in outputs(self.state, e, self.read)]
        carried = any(isinstance(p.message, SendMessage) and p.message.read for p in published)
        if self.read and not carried:
            published.insert(0, mark_read(self.state, self.read))
        return published


class Conversations:
    """The most recently handled conversations, at most `capacity` of them."""

    def __init__(self, store: EventStore, capacity: int = 10_000) -> None:
        self.store = store
        self.capacity = capacity
        self._kept: OrderedDict[str, Conversation] = OrderedDict()

    @contextlib.asynccontextmanager
    async def checkout(self, conversation_id: str) -> AsyncIterator[Conversation]:
        """The conversation for one handler run: kept again only when the run succeeds (a
        failed run may have changed it without committing)."""
        state = self._kept.pop(conversation_id, None)
        if state is None:
            state = await load(self.store, conversation_id)
        else:
            stream = conversation_stream(conversation_id)
            for recorded in await self.store.read_stream(stream, state.version + 1):
                evolve(state, recorded.event)
                state.version = recorded.version
        yield state
        self._kept[conversation_id] = state
        if len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    async def run(self, conversation_id: str, handle: Callable[[Conversation], Steps]) -> Steps:
        """`handle` the conversation, yielding each step's publishes; once more from the
        stream if the state was behind (every step is idempotent, so redoing is safe)."""
        for attempt in (1, 2):
            try:
                async with self.checkout(conversation_id) as state:
                    async for batch in handle(state):
                        yield batch
                return
            except (WrongExpectedVersion, StaleConversation):
                if attempt == 2:
                    raise

    def forget(self, conversation_id: str) -> None:
        """Something other than a checkout is about to change it."""
        self._kept.pop(conversation_id, None)

    def __len__(self) -> int:
        return len(self._kept)
