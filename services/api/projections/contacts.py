"""The contacts read model (`api_contacts`, and `api_contact_ids`: every id a customer is
known by), from the whole log. One person is one contact per business, shared by its
numbers: its id derives from the customer's key (the first id Meta gave them), and every id
dedup linked to that key (IdentityLinked) or saw beside it (MessageReceived's wa_id and
user_id) maps to it. Tags, attributes and the marketing opt-out come from the api's own
ContactCreated and ContactUpdated, its notes (`api_contact_notes`) from ContactNoteAdded and
ContactNoteDeleted; the marketing opt-out also from the customer's own
words (the bot's opt_out / opt_in actions, BotActed: STOP, START, a number's keywords),
Meta's `user_preferences` webhook (MarketingPreferenceReceived: stop, resume; a customer the
business never saw becomes a contact) and Meta's 131050 (the customer stopped marketing);
a customer the business sends to first is a contact from that send on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import msgspec

from services.api.ids import contact_id
from services.api.projections.conversations import meta_time
from shared.crypto.erased import address, sendable
from shared.events.business import (
    ContactCreated,
    ContactNoteAdded,
    ContactNoteDeleted,
    ContactUpdated,
    MessageRequested,
)
from shared.events.conversation import BotActed
from shared.events.dedup import IdentityLinked, MarketingPreferenceReceived, MessageReceived
from shared.events.outbound import SendFailed
from shared.eventstore import RecordedEvent
from shared.eventstore.subscription import Batch

NAME = "api.contacts"
TABLES = ("api_contacts", "api_contact_ids", "api_contact_notes")

_UPSERT = """
INSERT INTO api_contacts AS c (contact_id, business_id, customer, wa_id, user_id, name,
    first_seen_at, last_seen_at, sort_position)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6, $7, $7, $8)
ON CONFLICT (contact_id) DO UPDATE SET
    wa_id = COALESCE(c.wa_id, EXCLUDED.wa_id),
    user_id = COALESCE(c.user_id, EXCLUDED.user_id),
    name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE c.name END,
    first_seen_at = LEAST(c.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(c.last_seen_at, EXCLUDED.last_seen_at)
"""


async def _upsert(
    conn: asyncpg.Connection,
    rec: RecordedEvent,
    business: str,
    customer: str,
    *,
    wa_id: str = "",
    user_id: str = "",
    name: str = "",
    seen: datetime | None = None,
) -> str:
    contact = contact_id(business, customer)
    # The contact and every id it is known by, in one statement (sorted: writers of the
    # same ids take their rows in one order).
    await conn.execute(
        f"WITH contact AS ({_UPSERT.strip()})"
        " INSERT INTO api_contact_ids (business_id, id, contact_id)"
        " SELECT $2, unnest($9::text[]), $1 ON CONFLICT (business_id, id) DO NOTHING",
        contact,
        business,
        customer,
        wa_id,
        user_id,
        name,
        seen or rec.recorded_at,
        rec.position.global_position,
        sorted({customer, wa_id, user_id} - {""}),
    )
    return contact


def _looks_like_wa_id(value: str) -> bool:
    return value.isascii() and value.isdigit()


async def _received(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageReceived)
    if not e.business_id:
        return
    await _upsert(
        conn,
        rec,
        e.business_id,
        e.customer,
        wa_id=e.wa_id,
        user_id=e.user_id,
        name=e.customer_name,
        seen=meta_time(e.timestamp, rec.recorded_at),
    )


async def _linked(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, IdentityLinked)
    kind = {"wa_id": "wa_id", "user_id": "user_id"}.get(e.kind)
    extra = {kind: e.id} if kind else {}
    await _upsert(conn, rec, e.business_id, e.customer, **extra)
    if not kind:
        await conn.execute(
            "INSERT INTO api_contact_ids (business_id, id, contact_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (business_id, id) DO NOTHING",
            e.business_id,
            e.id,
            contact_id(e.business_id, e.customer),
        )


async def _created(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ContactCreated)
    contact = await _upsert(
        conn, rec, e.business_id, e.customer, wa_id=e.wa_id or address(e.customer), name=e.name
    )
    await conn.execute(
        "UPDATE api_contacts SET tags = $2, attributes = $3 WHERE contact_id = $1",
        contact,
        e.tags,
        e.attributes,
    )


async def _updated(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ContactUpdated)
    changes = {
        name: getattr(e, name)
        for name in ("tags", "attributes", "marketing_opt_out")
        if getattr(e, name) is not msgspec.UNSET
    }
    if not changes:
        return
    columns = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(changes))
    await conn.execute(
        f"UPDATE api_contacts SET {columns} WHERE contact_id = $1",
        e.contact_id,
        *changes.values(),
    )


async def _requested(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MessageRequested)
    exists = await conn.fetchval(
        "SELECT 1 FROM api_contacts WHERE contact_id = $1", contact_id(e.business_id, e.to)
    )
    # The id the client gave (older rows: the key, which may carry an erasure's epoch); none
    # when it gave the key, a pseudonym: the contact is known then.
    to = e.address or sendable(e.to)
    if not exists and to:
        kind = "wa_id" if _looks_like_wa_id(to) else "user_id"
        await _upsert(conn, rec, e.business_id, e.to, **{kind: to})


STOPPED_MARKETING = 131050  # Meta: the user stopped marketing messages from this business


async def _send_failed(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    """Meta's 131050 says the customer stopped marketing messages: opted out from now on
    (a later PATCH may opt them back in)."""
    e = rec.event
    assert isinstance(e, SendFailed)
    if e.code != STOPPED_MARKETING or "." not in e.conversation_id:
        return
    number, customer = e.conversation_id.split(".", 1)
    business = await conn.fetchval(
        "SELECT business_id FROM directory_numbers WHERE phone_number_id = $1", number
    )
    if business is None:
        return
    await conn.execute(
        "UPDATE api_contacts SET marketing_opt_out = true WHERE contact_id = $1",
        contact_id(business, customer),
    )


async def _preference(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, MarketingPreferenceReceived)
    opted_out = e.opted_out
    if not e.business_id or opted_out is None or not e.customer:
        return
    contact = await _upsert(
        conn,
        rec,
        e.business_id,
        e.customer,
        wa_id=e.wa_id,
        user_id=e.user_id,
        seen=meta_time(e.timestamp, rec.recorded_at),
    )
    await conn.execute(
        "UPDATE api_contacts SET marketing_opt_out = $2 WHERE contact_id = $1", contact, opted_out
    )


async def _bot_acted(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    """The customer's STOP or START (or the number's own keywords), as the bot acted on it:
    the last one of the turn wins."""
    e = rec.event
    assert isinstance(e, BotActed)
    kinds = [a.get("kind") for a in e.actions if a.get("kind") in ("opt_out", "opt_in")]
    if not kinds or not e.contact_id:
        return
    await conn.execute(
        "UPDATE api_contacts SET marketing_opt_out = $2 WHERE contact_id = $1",
        e.contact_id,
        kinds[-1] == "opt_out",
    )


async def _note_added(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ContactNoteAdded)
    await conn.execute(
        "INSERT INTO api_contact_notes (note_id, business_id, contact_id, text, author,"
        " created_at, sort_position) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (note_id) DO NOTHING",
        e.note_id,
        e.business_id,
        e.contact_id,
        e.text,
        e.actor,
        rec.recorded_at,
        rec.position.global_position,
    )


async def _note_deleted(conn: asyncpg.Connection, rec: RecordedEvent) -> None:
    e = rec.event
    assert isinstance(e, ContactNoteDeleted)
    await conn.execute(
        "DELETE FROM api_contact_notes WHERE note_id = $1 AND contact_id = $2",
        e.note_id,
        e.contact_id,
    )


HANDLERS: dict[type, Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]] = {
    MessageReceived: _received,
    IdentityLinked: _linked,
    ContactCreated: _created,
    ContactUpdated: _updated,
    ContactNoteAdded: _note_added,
    ContactNoteDeleted: _note_deleted,
    MessageRequested: _requested,
    SendFailed: _send_failed,
    MarketingPreferenceReceived: _preference,
    BotActed: _bot_acted,
}
TYPES = tuple(HANDLERS)  # what the subscription opens of the log


async def project(batch: Batch) -> None:
    for rec in batch.events:
        handler = HANDLERS.get(type(rec.event))
        if handler is not None:
            await handler(batch.conn, rec)
