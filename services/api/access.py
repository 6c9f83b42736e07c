"""The audit of reads of customers' data: every read of a contact, a conversation, its
messages, a file or an export through the API (the console's users included: they call the
same routes) is a `ContactDataRead` in the contact's `access-` stream, ids and roles only.
`GET /v1/contacts/{id}/accesses` (admin) lists them.

A contact shown in a list or a search answer (its name, number, a message's preview) is a
read too, `what: list`, at most once an hour per actor and contact, in one write for the
whole page (a console polling its inbox writes a page's worth of events an hour, not a
minute).

The cost is bounded: at most one event per actor, contact and kind of read a minute (an hour
for lists). The event's id is derived from those and the window, so that api processes
racing the same read write it once (the store drops a duplicate id), and each process
remembers what it wrote in the current window, so that a console polling a conversation
writes nothing more."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from services.api import inputs
from services.api import schemas as s
from services.api.errors import not_found
from services.api.routes import Call, Reply
from shared.events.business import ContactDataRead, access_stream
from shared.eventstore import StreamWrite, new
from shared.eventstore.postgres import PostgresEventStore

WINDOW = 60  # seconds: one event per actor, contact and kind of read in each
LIST_WINDOW = 3600  # for a contact shown in a list or search
_MEMORY = 10_000  # reads remembered per process (the current window's)
_recent: OrderedDict[tuple[str, ...], None] = OrderedDict()


async def record(call: Call, contact_id: str | None, what: str) -> None:
    """Record that the caller read `what` of the contact (None: none known, nothing)."""
    await _record(call, [contact_id] if contact_id else [], what, str(int(time.time() // WINDOW)))


async def record_listed(call: Call, contact_ids: list[str]) -> None:
    """Record that the caller was shown these contacts in a list or search answer: one
    write for the page, at most once an hour per actor and contact."""
    await _record(call, contact_ids, "list", "h" + str(int(time.time() // LIST_WINDOW)))


async def _record(call: Call, contact_ids: list[str], what: str, window: str) -> None:
    """One ContactDataRead per contact not recorded in this window yet, in one write; its id
    derived from the business, contact, kind of read, actor and window."""
    principal = call.principal
    writes, keys = [], []
    for contact_id in dict.fromkeys(c for c in contact_ids if c):
        key = (call.business_id, contact_id, what, principal.actor, window)
        if key in _recent:
            continue
        event = ContactDataRead(
            business_id=call.business_id,
            contact_id=contact_id,
            what=what,
            actor=principal.actor,
            role=principal.role,
        )
        stream = access_stream(call.business_id, contact_id)
        writes.append(
            StreamWrite(stream, [new(event, "access", *key, metadata=call.actor.metadata)])
        )
        keys.append(key)
    if not writes:
        return
    await PostgresEventStore(call.deps.pool).append_batch(writes)
    for key in keys:
        _recent[key] = None
    while len(_recent) > _MEMORY:
        _recent.popitem(last=False)


async def contact_of_conversation(db: Any, business_id: str, conversation_id: str) -> str | None:
    value = await db.fetchval(
        "SELECT contact_id FROM api_conversations WHERE conversation_id = $1 AND business_id = $2",
        conversation_id,
        business_id,
    )
    return str(value) if value else None


async def list_accesses(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    contact_id = call.path("contact_id", "contact")
    business = call.business_id
    known = await call.deps.pool.fetchval(
        "SELECT 1 FROM api_contacts WHERE contact_id = $1 AND business_id = $2"
        " UNION ALL SELECT 1 FROM erasures WHERE contact_id = $1 AND business_id = $2 LIMIT 1",
        contact_id,
        business,
    )
    if known is None:
        raise not_found("contact")
    recorded = await PostgresEventStore(call.deps.pool).read_stream(
        access_stream(business, contact_id)
    )
    items = [
        s.ContactAccess(actor=r.event.actor, role=r.event.role, what=r.event.what, at=r.recorded_at)
        for r in reversed(recorded)
        if isinstance(r.event, ContactDataRead)
    ]
    return Reply(200, s.ContactAccessList(data=items))
