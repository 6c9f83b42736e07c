"""What the api reads: the directory's tables and its own read models. Every query is
scoped to the caller's business, so another business's rows are simply not found (404 or an
empty list), whatever id, filter or cursor is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from services.api import cursor as cursors
from services.api import schemas as s
from shared.crypto import erased
from shared.crypto.erased import sendable

T = TypeVar("T")
WINDOW = timedelta(hours=24)


def _page(
    rows: Sequence[asyncpg.Record],
    limit: int,
    make: Callable[[asyncpg.Record], T],
    key: Callable[[asyncpg.Record], tuple[Any, ...]],
) -> tuple[list[T], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(*key(rows[-1])) if more and rows else None
    return [make(r) for r in rows], next_cursor


# --- the directory -------------------------------------------------------------------------


def business(row: asyncpg.Record) -> s.Business:
    return s.Business(
        id=row["business_id"],
        name=row["name"],
        messaging_limit=row["messaging_limit"],
        daily_send_quota=row["daily_send_quota"],
        is_default=row["is_default"],
        created_at=row["created_at"],
    )


async def get_business(db: Any, business_id: str) -> s.Business | None:
    row = await db.fetchrow(
        "SELECT * FROM directory_businesses WHERE business_id = $1", business_id
    )
    return business(row) if row else None


async def list_businesses(db: Any, limit: int, cursor: str | None) -> s.BusinessList:
    after = cursors.decode(cursor, datetime, str)
    rows = await db.fetch(
        "SELECT * FROM directory_businesses"
        " WHERE $1::timestamptz IS NULL OR (created_at, business_id) < ($1, $2)"
        " ORDER BY created_at DESC, business_id DESC LIMIT $3",
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    data, nxt = _page(rows, limit, business, lambda r: (r["created_at"], r["business_id"]))
    return s.BusinessList(data=data, next_cursor=nxt)


def number(row: asyncpg.Record) -> s.Number:
    return s.Number(
        phone_number_id=row["phone_number_id"],
        business_id=row["business_id"],
        waba_id=row["waba_id"],
        display_phone_number=row["display_phone_number"],
        send_rate_per_second=row["send_rate_per_second"],
        persona=row["persona"],
        llm_model=row["llm_model"],
        voice_id=row["voice_id"],
        own_app=row["own_app"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get_number(db: Any, business_id: str, phone_number_id: str) -> s.Number | None:
    row = await db.fetchrow(
        "SELECT * FROM directory_numbers WHERE phone_number_id = $1 AND business_id = $2",
        phone_number_id,
        business_id,
    )
    return number(row) if row else None


async def list_numbers(db: Any, business_id: str, limit: int, cursor: str | None) -> s.NumberList:
    after = cursors.decode(cursor, datetime, str)
    rows = await db.fetch(
        "SELECT * FROM directory_numbers WHERE business_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, phone_number_id) < ($2, $3))"
        " ORDER BY created_at DESC, phone_number_id DESC LIMIT $4",
        business_id,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    data, nxt = _page(rows, limit, number, lambda r: (r["created_at"], r["phone_number_id"]))
    return s.NumberList(data=data, next_cursor=nxt)


async def numbers_of(db: Any, business_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT phone_number_id FROM directory_numbers WHERE business_id = $1"
        " ORDER BY phone_number_id LIMIT 2",
        business_id,
    )
    return [r["phone_number_id"] for r in rows]


def api_key(row: asyncpg.Record) -> s.ApiKey:
    return s.ApiKey(
        id=row["key_id"],
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def list_keys(db: Any, business_id: str, limit: int, cursor: str | None) -> s.ApiKeyList:
    after = cursors.decode(cursor, datetime, str)
    rows = await db.fetch(
        "SELECT * FROM api_keys WHERE business_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, key_id) < ($2, $3))"
        " ORDER BY created_at DESC, key_id DESC LIMIT $4",
        business_id,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    data, nxt = _page(rows, limit, api_key, lambda r: (r["created_at"], r["key_id"]))
    return s.ApiKeyList(data=data, next_cursor=nxt)


async def get_key(db: Any, business_id: str, key_id: str) -> s.ApiKey | None:
    row = await db.fetchrow(
        "SELECT * FROM api_keys WHERE key_id = $1 AND business_id = $2", key_id, business_id
    )
    return api_key(row) if row else None


# --- conversations -------------------------------------------------------------------------

_CONVERSATION = """
SELECT c.*, COALESCE(c.last_message_at, c.created_at) AS sort_at,
       ct.name AS contact_name, ct.wa_id AS contact_wa_id, ct.user_id AS contact_user_id
  FROM api_conversations c LEFT JOIN api_contacts ct ON ct.contact_id = c.contact_id
"""


def window_open_until(last_inbound_at: datetime | None) -> datetime | None:
    return last_inbound_at + WINDOW if last_inbound_at is not None else None


def conversation(row: asyncpg.Record) -> s.Conversation:
    wa_id, user_id = row["contact_wa_id"], row["contact_user_id"]
    if wa_id is None and user_id is None:
        # The contacts read model is behind (its own subscription): the id replies go to,
        # kept with the conversation (rows from before it: the key, which was that id).
        given = row["address"] or sendable(row["customer"])
        if given.isascii() and given.isdigit():
            wa_id = given
        elif given:
            user_id = given
    return s.Conversation(
        id=row["conversation_id"],
        phone_number_id=row["phone_number_id"],
        contact=s.ContactRef(
            id=row["contact_id"],
            name=row["contact_name"] or "",
            wa_id=wa_id,
            user_id=user_id,
        ),
        last_message_at=row["last_message_at"],
        last_message_preview=row["last_message_preview"],
        window_open_until=window_open_until(row["last_inbound_at"]),
        state=row["state"],
        assignee=row["assignee"],
        unread=row["unread"],
    )


async def get_conversation(
    db: Any, business_id: str, conversation_id: str
) -> s.Conversation | None:
    row = await db.fetchrow(
        _CONVERSATION + " WHERE c.conversation_id = $1 AND c.business_id = $2",
        conversation_id,
        business_id,
    )
    return conversation(row) if row else None


async def list_conversations(
    db: Any,
    business_id: str,
    limit: int,
    cursor: str | None,
    *,
    state: str | None = None,
    assignee: str | None = None,
    tag: str | None = None,
    phone_number_id: str | None = None,
    contact_id: str | None = None,
) -> s.ConversationList:
    after = cursors.decode(cursor, datetime, str)
    args: list[Any] = [business_id, after[0] if after else None, after[1] if after else ""]
    where = [
        "c.business_id = $1",
        "($2::timestamptz IS NULL OR (COALESCE(c.last_message_at, c.created_at),"
        " c.conversation_id) < ($2, $3))",
    ]
    for clause, value in (
        ("c.state = ${}", state),
        ("c.assignee = ${}", assignee),
        ("ct.tags @> ARRAY[${}::text]", tag),
        ("c.phone_number_id = ${}", phone_number_id),
        ("c.contact_id = ${}", contact_id),
    ):
        if value is not None:
            args.append(value)
            where.append(clause.format(len(args)))
    args.append(limit + 1)
    rows = await db.fetch(
        _CONVERSATION + " WHERE " + " AND ".join(where) + " ORDER BY COALESCE(c.last_message_at,"
        f" c.created_at) DESC, c.conversation_id DESC LIMIT ${len(args)}",
        *args,
    )
    data, nxt = _page(rows, limit, conversation, lambda r: (r["sort_at"], r["conversation_id"]))
    return s.ConversationList(data=data, next_cursor=nxt)


async def conversation_window(
    db: Any, business_id: str, conversation_id: str
) -> tuple[bool, datetime | None]:
    """(known, when the customer-service window closes or closed: None, never opened)."""
    row = await db.fetchrow(
        "SELECT last_inbound_at FROM api_conversations"
        " WHERE conversation_id = $1 AND business_id = $2",
        conversation_id,
        business_id,
    )
    if row is None:
        return False, None
    return True, window_open_until(row["last_inbound_at"])


def conversation_message(row: asyncpg.Record) -> s.ConversationMessage:
    media, error = row["media"], row["error"]
    return s.ConversationMessage(
        id=row["message_id"],
        direction=row["direction"],
        author=row["author"],
        type=row["type"],
        text=row["text"],
        created_at=row["created_at"],
        media=s.MessageMedia(
            kind=media.get("kind", ""),
            mime_type=media.get("mime_type", ""),
            url=f"/v1/conversations/{row['conversation_id']}/messages/{row['message_id']}/media",
            expired=True if media.get("expired") else None,
        )
        if media
        else None,
        status=row["status"],
        # Why a message failed (Meta's code and title), for the console's ticks.
        error=s.MessageError(code=error.get("code"), title=error.get("title", ""))
        if error and row["status"] == "failed"
        else None,
    )


async def list_messages(
    db: Any, business_id: str, conversation_id: str, limit: int, cursor: str | None
) -> s.ConversationMessageList:
    """Oldest first: the conversation's order."""
    after = cursors.decode(cursor, int, str)
    rows = await db.fetch(
        "SELECT * FROM api_messages WHERE conversation_id = $1 AND business_id = $2"
        " AND ($3::bigint IS NULL OR (sort_position, message_id) > ($3, $4))"
        " ORDER BY sort_position, message_id LIMIT $5",
        conversation_id,
        business_id,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    data, nxt = _page(
        rows, limit, conversation_message, lambda r: (r["sort_position"], r["message_id"])
    )
    return s.ConversationMessageList(data=data, next_cursor=nxt)


async def get_message(db: Any, business_id: str, message_id: str) -> s.MessageView | None:
    row = await db.fetchrow(
        "SELECT * FROM api_messages WHERE message_id = $1 AND business_id = $2 AND via_api",
        message_id,
        business_id,
    )
    if row is None:
        return None
    error = row["error"]
    return s.MessageView(
        id=row["message_id"],
        conversation_id=row["conversation_id"],
        direction="outbound",
        type=row["type"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        wamid=row["wamid"],
        error=s.MessageError(code=error.get("code"), title=error.get("title", ""))
        if error and row["status"] == "failed"
        else None,
    )


# --- contacts ------------------------------------------------------------------------------


def contact(row: asyncpg.Record) -> s.Contact:
    return s.Contact(
        id=row["contact_id"],
        name=row["name"],
        tags=list(row["tags"]),
        attributes=row["attributes"],
        marketing_opt_out=row["marketing_opt_out"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        wa_id=row["wa_id"],
        user_id=row["user_id"],
    )


async def get_contact(db: Any, business_id: str, contact_id: str) -> s.Contact | None:
    row = await db.fetchrow(
        "SELECT * FROM api_contacts WHERE contact_id = $1 AND business_id = $2",
        contact_id,
        business_id,
    )
    return contact(row) if row else None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_contacts(
    db: Any,
    business_id: str,
    limit: int,
    cursor: str | None,
    *,
    tag: str | None = None,
    q: str | None = None,
) -> s.ContactList:
    after = cursors.decode(cursor, int, str)
    args: list[Any] = [business_id, after[0] if after else None, after[1] if after else ""]
    where = [
        "business_id = $1",
        "($2::bigint IS NULL OR (sort_position, contact_id) < ($2, $3))",
    ]
    if tag is not None:
        args.append(tag)
        where.append(f"tags @> ARRAY[${len(args)}::text]")
    if q is not None:
        args.append(_like(q))
        n = len(args)
        where.append(f"(name ILIKE ${n} OR wa_id ILIKE ${n} OR user_id ILIKE ${n})")
    args.append(limit + 1)
    rows = await db.fetch(
        "SELECT * FROM api_contacts WHERE " + " AND ".join(where) + " ORDER BY sort_position"
        f" DESC, contact_id DESC LIMIT ${len(args)}",
        *args,
    )
    data, nxt = _page(rows, limit, contact, lambda r: (r["sort_position"], r["contact_id"]))
    return s.ContactList(data=data, next_cursor=nxt)


async def customer_of(db: Any, business_id: str, given: str) -> str | None:
    """The key of the customer known by `given` (a wa_id, a user_id or the key itself)."""
    return await db.fetchval(
        "SELECT c.customer FROM api_contact_ids i JOIN api_contacts c USING (contact_id)"
        " WHERE i.business_id = $1 AND i.id = $2",
        business_id,
        given,
    )


async def address_of(db: Any, business_id: str, customer: str) -> str:
    """Where messages to the customer of this key go: their wa_id, else their user id ("":
    not known here; the conversation knows, once they wrote)."""
    found = await db.fetchval(
        "SELECT COALESCE(wa_id, user_id) FROM api_contacts WHERE business_id = $1"
        " AND customer = $2",
        business_id,
        customer,
    )
    return str(found or "")


async def customer_for(db: Any, business_id: str, given: str) -> str | None:
    """The key of the customer `given` names: a wa_id or a user id (a customer not known yet
    gets the key their first message would give them), or the key itself (the console
    sends to the conversation's), which must be one the business has (None: it is not)."""
    if erased.is_pseudonym(given):
        known = await db.fetchval(
            "SELECT 1 FROM api_contacts WHERE business_id = $1 AND customer = $2"
            " UNION ALL SELECT 1 FROM api_conversations WHERE business_id = $1 AND customer = $2"
            " LIMIT 1",
            business_id,
            given,
        )
        return given if known else None
    return await customer_of(db, business_id, given) or await erased.current_key(
        db, business_id, given
    )
