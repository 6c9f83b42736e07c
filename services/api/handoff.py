"""Who answers a conversation: `POST /v1/conversations/{id}/handoff | release | close`, and
`/read` (its unread count back to 0).

The conversation service is the one writer of a conversation: the api sends it a
ChangeHandling command and answers once the conversation has recorded the outcome
(HandedOff, Released or Closed, found in the event store by its id, which derives from the
request) and the read model shows it. So a 200 means the bot is already silent (or already
back): a customer message that arrives after the answer is handled in the new state. A
retry with the same Idempotency-Key is the same request, recorded once."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Annotated

from msgspec import Meta

from services.api import inputs, queries
from services.api.business import conversation_of
from services.api.errors import ApiError, invalid, unavailable
from services.api.projections import conversations as conversations_model
from services.api.routes import Call, Reply
from services.api.schemas import Request
from services.api.writes import write
from shared.broker.bus import BrokerUnavailable
from shared.events.business import ConversationRead, seen_stream
from shared.events.conversation import handling_event_id
from shared.eventstore import RecordedEvent, new
from shared.eventstore.postgres import PostgresEventStore
from shared.schemas import ChangeHandling

STAGE = "conversation"
OUTCOMES = {"handoff": "HandedOff", "release": "Released", "close": "Closed"}
WAIT_SECONDS = 10.0
READ_MODELS = (conversations_model.NAME,)


class Handoff(Request, kw_only=True):
    """`{"assignee"?}`: a user id of the business; without one the conversation waits."""

    assignee: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    reason: Annotated[str, Meta(max_length=200)] = ""


class NoBody(Request, kw_only=True):
    """Nothing, or `{}`."""


async def _conversation(call: Call) -> str:
    conversation = call.path("conversation_id", "conversation")
    await conversation_of(call, conversation)
    return conversation


def _request_id(call: Call) -> str:
    key = inputs.idempotency_key(call.request)
    if key is None:
        return uuid.uuid4().hex
    given = f"{call.principal.bucket}\x1f{call.request.path}\x1f{key}"
    return hashlib.sha256(given.encode()).hexdigest()[:32]


async def _recorded(call: Call, event_id: uuid.UUID) -> RecordedEvent:
    """The conversation's record of the request, once it is there."""
    store = PostgresEventStore(pool=call.deps.pool)
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.005
    while True:
        found = await store.find(event_id)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise ApiError(
                503,
                "not_yet_recorded",
                "the conversation has not recorded the change yet; repeat the request with"
                " the same Idempotency-Key to get its answer",
                {"Retry-After": "1"},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def _change(call: Call, action: str, assignee: str | None = None, reason: str = "") -> Reply:
    conversation = await _conversation(call)
    bus = call.deps.bus
    if bus is None or not bus.ready:
        raise unavailable("the broker is unreachable")
    request_id = _request_id(call)
    command = ChangeHandling(
        request_id=request_id,
        conversation_id=conversation,
        action=action,
        assignee=assignee,
        actor=call.principal.actor,
        reason=reason,
    )
    try:
        await bus.publish(STAGE, conversation, command, headers={"x-correlation-id": request_id})
    except BrokerUnavailable:
        raise unavailable("the broker is unreachable") from None
    found = await _recorded(call, handling_event_id(OUTCOMES[action], conversation, request_id))
    await call.deps.consistency.wait(found.position, READ_MODELS)
    answer = await queries.get_conversation(call.deps.pool, call.business_id, conversation)
    assert answer is not None
    return Reply(200, answer)


async def hand_off(call: Call) -> Reply:
    body, _ = await inputs.body(call.request, Handoff)
    if body.assignee is not None:
        known = await call.deps.pool.fetchval(
            "SELECT 1 FROM api_users WHERE user_id = $1 AND business_id = $2",
            body.assignee,
            call.business_id,
        )
        if not known:
            raise invalid("assignee", "no user of the business has this id")
    return await _change(call, "handoff", body.assignee, body.reason)


async def release(call: Call) -> Reply:
    await inputs.body(call.request, NoBody)
    return await _change(call, "release")


async def close(call: Call) -> Reply:
    await inputs.body(call.request, NoBody)
    return await _change(call, "close")


async def mark_read(call: Call) -> Reply:
    await inputs.body(call.request, NoBody)
    conversation = await _conversation(call)
    async with write(call.deps.pool) as w:
        unread = await w.conn.fetchval(
            "SELECT unread FROM api_conversations WHERE conversation_id = $1", conversation
        )
        if unread:
            event = ConversationRead(
                business_id=call.business_id,
                conversation_id=conversation,
                actor=call.principal.actor,
            )
            await w.append(seen_stream(conversation), [new(event, metadata=call.principal.audit)])
    await call.deps.consistency.wait(w.position, READ_MODELS)
    answer = await queries.get_conversation(call.deps.pool, call.business_id, conversation)
    assert answer is not None
    return Reply(200, answer)
