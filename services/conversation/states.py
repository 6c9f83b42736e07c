"""Conversations kept in memory between a customer's messages.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from services.conversation.domain import Conversation
from shared.eventstore import EventStore, WrongExpectedVersion

T = TypeVar("T")


class StaleConversation(Exception):
    """An append found its events already stored: the state it started from was behind."""


def conversation_stream(conversation_id: str) -> str:
    return f"conversation-{conversation_id}"


async def load(store: EventStore, conversation_id: str) -> Conversation:
    """The conversation as its stream says now."""
    events = await store.read_stream(conversation_stream(conversation_id))
    return Conversation.from_events(conversation_id, events)


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
            for event in await self.store.read_stream(stream, state.version + 1):
                state.apply(event.type, event.data)
                state.version = event.version
        yield state
        self._kept[conversation_id] = state
        if len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    async def run(self, conversation_id: str, handle: Callable[[Conversation], Awaitable[T]]) -> T:
        """`handle` the conversation; once more from its stream if the state was behind."""
        try:
            async with self.checkout(conversation_id) as state:
                return await handle(state)
        except (WrongExpectedVersion, StaleConversation):
            async with self.checkout(conversation_id) as state:
                return await handle(state)

    def forget(self, conversation_id: str) -> None:
        """Something other than a checkout is about to change it."""
        self._kept.pop(conversation_id, None)

    def __len__(self) -> int:
        return len(self._kept)
