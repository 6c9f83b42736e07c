"""The analytics read model (`api.analytics`): first responses and handoffs, which the
conversations read model does not keep, for `GET /v1/analytics` (services/api/analytics.py).

- A customer's message waits for an answer from when the platform recorded it
  (MessageReceived), unless one waits already; a system notice or a reaction does not wait.
- The first reply after it answers it: the bot's (BotReplied) is a bot response, a
  person's (BusinessWrote by an agent or a console user, PhoneAppWrote) an agent response;
  a business key's message (a notification, a campaign) answers nothing.
- A handoff from the bot to a person (HandedOff while the bot or nobody has it) is counted,
  and starts a wait for the person unless one waits already or a person's own message made
  it (`agent_wrote`, `phone_app_reply`: that message was the answer). A release or a close
  ends the wait: nobody is going to answer that message as such.
- A bot reply withdrawn before it was sent (ReplyWithdrawn) answered nothing: its response
  goes, and the wait it ended is back.

Its own subscription, so a new deployment of it replays the whole log by itself; the
conversation's business comes from the events that name it (MessageReceived,
MessageRequested) or from the number's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from shared.events.business import MessageRequested
from shared.events.conversation import (
    BotReplied,
    BusinessWrote,
    Closed,
    HandedOff,
    PhoneAppWrote,
    Released,
    Reopened,
    ReplyWithdrawn,
)
from shared.events.dedup import MessageReceived
from shared.eventstore import RecordedEvent, stream_id
from shared.eventstore.subscription import Batch

NAME = "api.analytics"
TABLES = ("api_analytics_conversations", "api_analytics_responses", "api_analytics_handoffs")
NOT_WAITING = ("system", "reaction")  # a customer's message no one is expected to answer
PEOPLE = ("waiting", "agent")
OWN_ANSWER = ("agent_wrote", "phone_app_reply")  # a handoff made by a person's message


async def _known(conn: asyncpg.Connection, conversation: str) -> asyncpg.Record | None:
    """The conversation's row; made for a conversation the business wrote first (a
    campaign), from its number's business."""
    row = await conn.fetchrow(
        "SELECT * FROM api_analytics_conversations WHERE conversation_id = $1", conversation
    )
    if row is not None:
        return row
    number, _, customer = conversation.partition(".")
    business = await conn.fetchval(
        "SELECT business_id FROM directory_numbers WHERE phone_number_id = $1", number
    )
    if business is None or not customer:
        return None
    return await _open(conn, conversation, business, number)


async def _open(
    conn: asyncpg.Connection, conversation: str, business: str, number: str
) -> asyncpg.Record:
    await conn.execute(
        "INSERT INTO api_analytics_conversations (conversation_id, business_id,"
        " phone_number_id) VALUES ($1, $2, $3) ON CONFLICT (conversation_id) DO NOTHING",
        conversation,
        business,
        number,
    )
    row = await conn.fetchrow(
        "SELECT * FROM api_analytics_conversations WHERE conversation_id = $1", conversation
    )
    assert row is not None
    return row


async def _wait(conn: asyncpg.Connection, conversation: str, since: datetime) -> None:
    """A wait starts, unless an earlier one is running (LEAST ignores a NULL)."""
    await conn.execute(
        "UPDATE api_analytics_conversations SET waiting_since = LEAST(waiting_since, $2)"
        " WHERE conversation_id = $1",
        conversation,
        since,
    )


async def _end_wait(conn: asyncpg.Connection, conversation: str) -> None:
    await conn.execute(
        "UPDATE api_analytics_conversations SET waiting_since = NULL WHERE conversation_id = $1",
        conversation,
    )


async def _received(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageReceived)
    if not e.business_id:
        return  # no business owns the number: never shown
    # Opened if new, and a wait started unless one is running (LEAST ignores a NULL: a
    # message that asks nothing leaves the wait as it is). One statement.
    await conn.execute(
        "INSERT INTO api_analytics_conversations AS a (conversation_id, business_id,"
        " phone_number_id, waiting_since) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (conversation_id) DO UPDATE"
        " SET waiting_since = LEAST(a.waiting_since, EXCLUDED.waiting_since)",
        e.conversation_id,
        e.business_id,
        e.phone_number_id,
        None if e.type in NOT_WAITING else rec.recorded_at,
    )


async def _requested(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageRequested)
    await _open(conn, e.conversation_id, e.business_id, e.phone_number_id)


async def _answer(conn: asyncpg.Connection, rec: RecordedEvent, responder: str, reply: str) -> None:
    conversation = stream_id(rec.stream)
    # The answer to a running wait, and the wait's end, in one statement; it says whether
    # the conversation was known at all.
    known = await conn.fetchval(
        "WITH row AS (SELECT business_id, phone_number_id, waiting_since"
        " FROM api_analytics_conversations WHERE conversation_id = $1),"
        " answered AS (INSERT INTO api_analytics_responses (position, business_id,"
        " phone_number_id, conversation_id, responder, reply_id, asked_at, answered_at)"
        " SELECT $2, r.business_id, r.phone_number_id, $1, $3, $4, r.waiting_since,"
        " GREATEST($5, r.waiting_since) FROM row r WHERE r.waiting_since IS NOT NULL"
        " ON CONFLICT (position) DO NOTHING),"
        " ended AS (UPDATE api_analytics_conversations SET waiting_since = NULL"
        " WHERE conversation_id = $1 AND waiting_since IS NOT NULL)"
        " SELECT count(*) FROM row",
        conversation,
        rec.position.global_position,
        responder,
        reply,
        rec.recorded_at,
    )
    if not known:
        await _known(conn, conversation)  # a conversation the business wrote first: opened


async def _bot_replied(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, BotReplied)
    await _answer(conn, rec, "bot", e.command_id)


async def _business_wrote(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, BusinessWrote)
    if e.author == "agent":
        await _answer(conn, rec, "agent", e.message_id)
    else:
        await _known(conn, stream_id(rec.stream))  # a campaign's first message opens it


async def _phone_app(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, PhoneAppWrote)
    await _answer(conn, rec, "agent", e.wamid)


async def _withdrawn(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ReplyWithdrawn)
    conversation = stream_id(rec.stream)
    asked = await conn.fetchval(
        "DELETE FROM api_analytics_responses WHERE conversation_id = $1 AND reply_id = $2"
        " RETURNING asked_at",
        conversation,
        e.command_id,
    )
    if asked is not None:
        await _wait(conn, conversation, asked)


async def _handed_off(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, HandedOff)
    conversation = stream_id(rec.stream)
    row = await _known(conn, conversation)
    if row is None:
        return
    if row["state"] not in PEOPLE:  # from the bot (or closed) to a person: a handoff
        await conn.execute(
            "INSERT INTO api_analytics_handoffs (position, business_id, phone_number_id,"
            " conversation_id, at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (position) DO NOTHING",
            rec.position.global_position,
            row["business_id"],
            row["phone_number_id"],
            conversation,
            rec.recorded_at,
        )
        if e.reason not in OWN_ANSWER:
            await _wait(conn, conversation, rec.recorded_at)
    await _state(conn, conversation, "agent" if e.assignee else "waiting")


async def _state(conn: asyncpg.Connection, conversation: str, state: str) -> None:
    await conn.execute(
        "UPDATE api_analytics_conversations SET state = $2 WHERE conversation_id = $1",
        conversation,
        state,
    )


async def _released(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    conversation = stream_id(rec.stream)
    await _end_wait(conn, conversation)
    await _state(conn, conversation, "closed" if isinstance(rec.event, Closed) else "bot")


async def _reopened(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    await _state(conn, stream_id(rec.stream), "bot")


HANDLERS: dict[type, Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]] = {
    MessageReceived: _received,
    MessageRequested: _requested,
    BotReplied: _bot_replied,
    BusinessWrote: _business_wrote,
    PhoneAppWrote: _phone_app,
    ReplyWithdrawn: _withdrawn,
    HandedOff: _handed_off,
    Released: _released,
    Closed: _released,
    Reopened: _reopened,
}
TYPES = tuple(HANDLERS)  # what the subscription opens of the log


async def project(batch: Batch) -> None:
    for rec in batch.events:
        handler = HANDLERS.get(type(rec.event))
        if handler is not None:
            await handler(batch.conn, rec)
