"""The conversations read model and their messages (`api_conversations`, `api_messages`),
from the whole log:

- a customer's message (MessageReceived, from dedup) opens or moves its conversation: the
  24 h window counts from Meta's `timestamp` of the last one, `unread` counts them; what it
  says is refined by the conversation's CustomerWrote (a voice note's transcript, a file's
  description);
- the bot's replies (BotReplied) and the business's messages (MessageRequested when the api
  accepts one, BusinessWrote when the conversation puts it in the customer's order) are the
  outbound messages; their statuses come from outbound (MessageSent, LifecycleChanged,
  SendFailed), joined by command id, which is the message id of an api send;
- statuses only move forward: queued, sent, delivered, then read or failed, both final;
- a customer's file, once the media service kept it (MediaStored) or gave it up
  (MediaFailed), is where `GET .../messages/{id}/media` finds it (or why it cannot).

A conversation belongs to the business its first event named; messages of a conversation
no business owns (an unrouted number) are not kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.api.ids import contact_id
from shared.crypto.erased import sendable
from shared.events.business import ConversationRead, MessageRequested
from shared.events.conversation import (
    BotReplied,
    BusinessWrote,
    Closed,
    CustomerWrote,
    HandedOff,
    PhoneAppWrote,
    Released,
    Reopened,
    ReplySpoken,
    ReplyWithdrawn,
)
from shared.events.dedup import MessageReceived
from shared.events.media import MediaExpired, MediaFailed, MediaStored
from shared.events.outbound import LifecycleChanged, MessageSent, SendFailed
from shared.eventstore import RecordedEvent, stream_id
from shared.eventstore.subscription import Batch

NAME = "api.conversations"
TABLES = ("api_conversations", "api_messages")
MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
# A status's rank; read and failed are both final.
_RANK = "CASE status WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 ELSE 3 END"
RANKS = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 3}
STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read"}
STATUSES["failed"] = "failed"


def meta_time(timestamp: str | None, fallback: datetime) -> datetime:
    """Meta's unix seconds as a time; the recording time when absent or not a number."""
    try:
        return datetime.fromtimestamp(int(timestamp or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return fallback


def inbound_text(message: dict[str, Any]) -> str:
    """What a customer's message says as Meta sent it (text, caption, button, place...)."""
    kind = message.get("type")
    body = message.get(kind) if isinstance(kind, str) else None
    if not isinstance(body, dict):
        return ""
    if kind == "text":
        return str(body.get("body", ""))
    if kind in MEDIA_KINDS:
        return str(body.get("caption", ""))
    if kind == "interactive":
        for reply in ("button_reply", "list_reply"):
            if isinstance(body.get(reply), dict):
                return str(body[reply].get("title", ""))
        return ""
    if kind == "button":
        return str(body.get("text", ""))
    if kind == "location":
        return str(body.get("name") or body.get("address") or "")
    if kind == "reaction":
        return str(body.get("emoji", ""))
    return ""


def preview(text: str, kind: str) -> str:
    return (text or f"[{kind}]")[:200]


async def _business(conn: asyncpg.Connection, conversation: str) -> str | None:
    return await conn.fetchval(
        "SELECT business_id FROM api_conversations WHERE conversation_id = $1", conversation
    )


async def _touch(
    conn: asyncpg.Connection, conversation: str, at: datetime, text: str, message: str
) -> None:
    """The conversation's last message, if this one is not older."""
    await conn.execute(
        "UPDATE api_conversations SET last_message_at = $2, last_message_preview = $3,"
        " last_message_id = $4 WHERE conversation_id = $1"
        " AND (last_message_at IS NULL OR last_message_at <= $2)",
        conversation,
        at,
        text,
        message,
    )


async def _status(
    conn: asyncpg.Connection,
    where: str,
    value: str,
    status: str,
    at: datetime,
    error: dict[str, Any] | None = None,
    wamid: str | None = None,
) -> None:
    await conn.execute(
        f"UPDATE api_messages SET status = $2, updated_at = $3,"
        f" error = COALESCE($4, error), wamid = COALESCE($5, wamid)"
        f" WHERE {where} = $1 AND status IS NOT NULL AND {_RANK} < $6",
        value,
        status,
        at,
        error,
        wamid,
        RANKS[status],
    )


def _error(errors: list[Any]) -> dict[str, Any] | None:
    first = errors[0] if errors and isinstance(errors[0], dict) else None
    if first is None:
        return None
    code = first.get("code")
    return {
        "code": code if isinstance(code, int) else None,
        "title": str(first.get("title") or first.get("message") or ""),
    }


async def _received(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageReceived)
    if not e.business_id:
        return  # no business owns the number: recorded, never shown
    at = meta_time(e.timestamp, rec.recorded_at)
    text = inbound_text(e.message)
    media = None
    if e.type in MEDIA_KINDS and isinstance(e.message.get(e.type), dict):
        media = {"kind": e.type, "mime_type": str(e.message[e.type].get("mime_type", ""))}
    inserted = await conn.fetchval(
        "INSERT INTO api_messages (message_id, business_id, conversation_id, direction,"
        " author, type, text, media, sort_position, created_at, updated_at)"
        " VALUES ($1, $2, $3, 'inbound', 'customer', $4, $5, $6, $7, $8, $8)"
        " ON CONFLICT (message_id) DO NOTHING RETURNING 1",
        e.wamid,
        e.business_id,
        e.conversation_id,
        e.type,
        text,
        media,
        rec.position.global_position,
        at,
    )
    if not inserted:
        return
    # A system notice (a number change) is not the customer writing: no window.
    inbound_at = None if e.type == "system" else at
    await conn.execute(
        "INSERT INTO api_conversations AS c (conversation_id, business_id, phone_number_id,"
        " customer, contact_id, last_message_at, last_message_preview, last_message_id,"
        " last_inbound_at, unread, created_at, address)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11)"
        " ON CONFLICT (conversation_id) DO UPDATE SET unread = c.unread + 1,"
        " address = COALESCE(c.address, EXCLUDED.address),"
        " last_inbound_at = GREATEST(c.last_inbound_at, EXCLUDED.last_inbound_at),"
        " last_message_preview = CASE WHEN c.last_message_at IS NULL"
        "   OR c.last_message_at <= EXCLUDED.last_message_at"
        "   THEN EXCLUDED.last_message_preview ELSE c.last_message_preview END,"
        " last_message_id = CASE WHEN c.last_message_at IS NULL"
        "   OR c.last_message_at <= EXCLUDED.last_message_at"
        "   THEN EXCLUDED.last_message_id ELSE c.last_message_id END,"
        " last_message_at = GREATEST(c.last_message_at, EXCLUDED.last_message_at)",
        e.conversation_id,
        e.business_id,
        e.phone_number_id,
        e.customer,
        contact_id(e.business_id, e.customer),
        at,
        preview(text, e.type),
        e.wamid,
        inbound_at,
        rec.recorded_at,
        e.reply_to(),
    )


async def _customer_wrote(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, CustomerWrote)
    if not e.wamid or not e.text:
        return
    await conn.execute(
        "WITH refined AS (UPDATE api_messages SET text = $2 WHERE message_id = $1"
        " AND text <> $2)"
        " UPDATE api_conversations SET last_message_preview = $3"
        " WHERE conversation_id = $4 AND last_message_id = $1",
        e.wamid,
        e.text,
        e.text[:200],
        stream_id(rec.stream),
    )


async def _outbound(
    conn: asyncpg.Connection,
    rec: RecordedEvent,
    message: str,
    author: str,
    kind: str,
    text: str,
    via_api: bool = False,
) -> None:
    # One statement: the message under the conversation's business (none: a conversation
    # no business owns, nothing kept), and the conversation's last message if not older.
    await conn.execute(
        "WITH kept AS (INSERT INTO api_messages (message_id, business_id, conversation_id,"
        " direction, author, type, text, status, via_api, sort_position, created_at,"
        " updated_at)"
        " SELECT $1, c.business_id, $2, 'outbound', $3, $4, $5, 'queued', $6, $7, $8, $8"
        " FROM api_conversations c WHERE c.conversation_id = $2"
        " ON CONFLICT (message_id) DO UPDATE SET sort_position = EXCLUDED.sort_position,"
        " text = CASE WHEN EXCLUDED.text <> '' THEN EXCLUDED.text ELSE api_messages.text END)"
        " UPDATE api_conversations SET last_message_at = $8, last_message_preview = $9,"
        " last_message_id = $1 WHERE conversation_id = $2"
        " AND (last_message_at IS NULL OR last_message_at <= $8)",
        message,
        stream_id(rec.stream),
        author,
        kind,
        text,
        via_api,
        rec.position.global_position,
        rec.recorded_at,
        preview(text, kind),
    )


async def _bot_replied(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, BotReplied)
    await _outbound(conn, rec, e.command_id, "bot", "text", e.text)


async def _reply_spoken(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ReplySpoken)
    await conn.execute("UPDATE api_messages SET type = 'audio' WHERE message_id = $1", e.command_id)


async def _business_wrote(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, BusinessWrote)
    if e.actor.startswith("campaign:"):
        await _opened_by_campaign(conn, rec)
    # In the customer's order now: its place in the history is where the conversation put it.
    await _outbound(conn, rec, e.message_id, e.author, e.type, e.text, via_api=True)


async def _opened_by_campaign(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    """A campaign writes first to customers the api never had a conversation with: the
    conversation is the number's business's from its first campaign message on."""
    conversation = stream_id(rec.stream)
    number, _, customer = conversation.partition(".")
    business = await conn.fetchval(
        "SELECT business_id FROM directory_numbers WHERE phone_number_id = $1", number
    )
    if business is None or not customer:
        return
    await conn.execute(
        "INSERT INTO api_conversations (conversation_id, business_id, phone_number_id,"
        " customer, contact_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (conversation_id) DO NOTHING",
        conversation,
        business,
        number,
        customer,
        contact_id(business, customer),
        rec.recorded_at,
    )


async def _phone_app(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    """A person's message from the business's phone app: Meta has delivered it already
    (sent), and its later statuses find it by its wamid."""
    e = rec.event
    assert isinstance(e, PhoneAppWrote)
    conversation = stream_id(rec.stream)
    business = await _business(conn, conversation)
    if business is None:
        return
    at = meta_time(e.timestamp, rec.recorded_at)
    await conn.execute(
        "INSERT INTO api_messages (message_id, business_id, conversation_id, direction,"
        " author, type, text, status, wamid, sort_position, created_at, updated_at)"
        " VALUES ($1, $2, $3, 'outbound', 'agent', $4, $5, 'sent', $1, $6, $7, $7)"
        " ON CONFLICT (message_id) DO NOTHING",
        e.wamid,
        business,
        conversation,
        e.type,
        e.text,
        rec.position.global_position,
        at,
    )
    await _touch(conn, conversation, at, preview(e.text, e.type), e.wamid)


async def _requested(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageRequested)
    await conn.execute(
        "INSERT INTO api_conversations AS c (conversation_id, business_id, phone_number_id,"
        " customer, contact_id, created_at, address) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (conversation_id) DO UPDATE SET"
        " address = COALESCE(c.address, EXCLUDED.address)",
        e.conversation_id,
        e.business_id,
        e.phone_number_id,
        e.to,
        contact_id(e.business_id, e.to),
        rec.recorded_at,
        sendable(e.address or e.to) or None,
    )
    await conn.execute(
        "INSERT INTO api_messages (message_id, business_id, conversation_id, direction,"
        " author, type, text, status, via_api, sort_position, created_at, updated_at)"
        " VALUES ($1, $2, $3, 'outbound', $4, $5, $6, 'queued', true, $7, $8, $8)"
        " ON CONFLICT (message_id) DO NOTHING",
        e.message_id,
        e.business_id,
        e.conversation_id,
        e.author,
        e.type,
        _requested_text(e.payload, e.type),
        rec.position.global_position,
        rec.recorded_at,
    )


def _requested_text(payload: dict[str, Any], kind: str) -> str:
    body = payload.get(kind)
    if not isinstance(body, dict):
        return ""
    if kind == "text":
        return str(body.get("body", ""))
    if kind == "template":
        return f"[template {body.get('name', '')}]"
    if kind == "interactive":
        inner = body.get("body")
        return str(inner.get("text", "")) if isinstance(inner, dict) else ""
    return str(body.get("caption") or body.get("emoji") or body.get("name") or "")


async def _sent(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageSent)
    # The wamid always; the status as _status moves it (forward only). One statement: SET
    # sees the row as it was, so both conditions judge the old status.
    await conn.execute(
        f"UPDATE api_messages SET wamid = $2,"
        f" status = CASE WHEN status IS NOT NULL AND {_RANK} < $3 THEN 'sent' ELSE status END,"
        f" updated_at = CASE WHEN status IS NOT NULL AND {_RANK} < $3 THEN $4"
        f" ELSE updated_at END"
        f" WHERE message_id = $1",
        e.command_id,
        e.wamid,
        RANKS["sent"],
        rec.recorded_at,
    )


async def _lifecycle(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, LifecycleChanged)
    status = STATUSES.get(e.status)
    if status is not None:
        await _status(conn, "wamid", e.wamid, status, rec.recorded_at, _error(e.errors))


async def _send_failed(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, SendFailed)
    error = {"code": e.code, "title": e.title}
    await _status(conn, "message_id", stream_id(rec.stream), "failed", rec.recorded_at, error)


async def _handling(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    """Who answers, as the conversation recorded it: its events are the truth."""
    e = rec.event
    state, assignee = "bot", None
    if isinstance(e, HandedOff):
        state, assignee = ("agent" if e.assignee else "waiting"), e.assignee
    elif isinstance(e, Closed):
        state = "closed"
    await conn.execute(
        "UPDATE api_conversations SET state = $2, assignee = $3 WHERE conversation_id = $1",
        stream_id(rec.stream),
        state,
        assignee,
    )


async def _withdrawn(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    """A bot reply never sent (a person took over while it was spoken): not in the history."""
    e = rec.event
    assert isinstance(e, ReplyWithdrawn)
    await conn.execute("DELETE FROM api_messages WHERE message_id = $1", e.command_id)


async def _read(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ConversationRead)
    await conn.execute(
        "UPDATE api_conversations SET unread = 0 WHERE conversation_id = $1 AND business_id = $2",
        e.conversation_id,
        e.business_id,
    )


async def _media(conn: asyncpg.Connection, wamid: str, conversation: str, more: dict) -> None:
    """Adds to the inbound message's media (set when its MessageReceived had a file)."""
    await conn.execute(
        "UPDATE api_messages SET media = media || $3::jsonb"
        " WHERE message_id = $1 AND conversation_id = $2 AND media IS NOT NULL",
        wamid,
        conversation,
        more,
    )


async def _media_stored(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MediaStored)
    more: dict[str, Any] = {"store": e.store or "local", "store_key": e.store_key, "size": e.size}
    if e.mime_type:
        more["mime_type"] = e.mime_type  # what was checked, over what the webhook said
    await _media(conn, e.wamid, e.conversation_id, more)


async def _media_failed(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MediaFailed)
    if e.conversation_id:
        await _media(conn, e.wamid, e.conversation_id, {"failed": e.reason or "failed"})


async def _media_expired(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MediaExpired)
    await _media(conn, e.wamid, e.conversation_id, {"expired": True})


HANDLERS: dict[type, Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]] = {
    MessageReceived: _received,
    CustomerWrote: _customer_wrote,
    BotReplied: _bot_replied,
    ReplySpoken: _reply_spoken,
    BusinessWrote: _business_wrote,
    PhoneAppWrote: _phone_app,
    MessageRequested: _requested,
    MessageSent: _sent,
    LifecycleChanged: _lifecycle,
    SendFailed: _send_failed,
    HandedOff: _handling,
    Released: _handling,
    Closed: _handling,
    Reopened: _handling,
    ReplyWithdrawn: _withdrawn,
    ConversationRead: _read,
    MediaStored: _media_stored,
    MediaFailed: _media_failed,
    MediaExpired: _media_expired,
}
TYPES = tuple(HANDLERS)  # what the subscription opens of the log


async def project(batch: Batch) -> None:
    for rec in batch.events:
        handler = HANDLERS.get(type(rec.event))
        if handler is not None:
            await handler(batch.conn, rec)
