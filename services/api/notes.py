"""A contact's notes (`GET | POST /v1/contacts/{id}/notes`, `DELETE .../notes/{note_id}`):
what the business's people write about a customer. A note is personal data: it is an event
of the contact's stream (sealed with the contact's key, so an erasure takes it), read from
the `api_contact_notes` read model. Anyone of the business reads them (reading is audited
like the contact's other data); agents and admins write; a note is deleted by its author or
an admin."""

from __future__ import annotations

import secrets
from datetime import datetime

import asyncpg

from services.api import access, inputs, queries
from services.api import cursor as cursors
from services.api import schemas as s
from services.api.errors import forbidden, not_found
from services.api.projections import contacts as contacts_model
from services.api.routes import Call, Reply, paging
from services.api.writes import write
from shared.events.business import ContactNoteAdded, ContactNoteDeleted, contact_stream
from shared.eventstore import new

CONTACTS = (contacts_model.NAME,)


def _note(row: asyncpg.Record) -> s.Note:
    return s.Note(
        id=row["note_id"], text=row["text"], author=row["author"], created_at=row["created_at"]
    )


async def _contact(call: Call) -> str:
    the_id = call.path("contact_id", "contact")
    if await queries.get_contact(call.deps.pool, call.business_id, the_id) is None:
        raise not_found("contact")
    return the_id


async def list_notes(call: Call) -> Reply:
    limit, cursor = paging(call)
    contact = await _contact(call)
    after = cursors.decode(cursor, int)
    rows = await call.deps.pool.fetch(
        "SELECT * FROM api_contact_notes WHERE contact_id = $1 AND business_id = $2"
        " AND ($3::bigint IS NULL OR sort_position < $3)"
        " ORDER BY sort_position DESC LIMIT $4",
        contact,
        call.business_id,
        after[0] if after else None,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1]["sort_position"]) if more else None
    await access.record(call, contact, "notes")
    return Reply(200, s.NoteList(data=[_note(r) for r in rows], next_cursor=next_cursor))


async def all_notes(db: asyncpg.Connection, business_id: str, contact_id: str) -> list[s.Note]:
    """Every note of the contact, newest first (the export's)."""
    rows = await db.fetch(
        "SELECT * FROM api_contact_notes WHERE contact_id = $1 AND business_id = $2"
        " ORDER BY sort_position DESC",
        contact_id,
        business_id,
    )
    return [_note(r) for r in rows]


async def add_note(call: Call) -> Reply:
    contact = await _contact(call)
    body, _ = await inputs.body(call.request, s.CreateNote)
    note_id = "note_" + secrets.token_hex(8)
    event = ContactNoteAdded(
        business_id=call.business_id,
        contact_id=contact,
        note_id=note_id,
        text=body.text,
        actor=call.actor.name,
    )
    async with write(call.deps.pool) as w:
        await w.append(
            contact_stream(call.business_id, contact), [new(event, metadata=call.actor.metadata)]
        )
        position = w.position
    await call.deps.consistency.wait(position, CONTACTS)
    row = await call.deps.pool.fetchrow(
        "SELECT * FROM api_contact_notes WHERE note_id = $1", note_id
    )
    if row is None:  # the read model did not catch up in time: the note as written
        return Reply(201, s.Note(id=note_id, text=body.text, author=call.actor.name,
                                 created_at=datetime.now().astimezone()))  # fmt: skip
    return Reply(201, _note(row))


async def delete_note(call: Call) -> Reply:
    contact = await _contact(call)
    note_id = call.path("note_id", "note")
    row = await call.deps.pool.fetchrow(
        "SELECT author FROM api_contact_notes WHERE note_id = $1 AND contact_id = $2"
        " AND business_id = $3",
        note_id,
        contact,
        call.business_id,
    )
    if row is None:
        raise not_found("note")
    if call.principal.role != "admin" and row["author"] != call.actor.name:
        raise forbidden("a note is deleted by its author or an admin")
    event = ContactNoteDeleted(
        business_id=call.business_id, contact_id=contact, note_id=note_id, actor=call.actor.name
    )
    async with write(call.deps.pool) as w:
        await w.append(
            contact_stream(call.business_id, contact), [new(event, metadata=call.actor.metadata)]
        )
        position = w.position
    await call.deps.consistency.wait(position, CONTACTS)
    return Reply(204)
