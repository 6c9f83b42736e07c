"""A business key's routes for reading (numbers, conversations, messages, contacts) and for
its contacts (import, tags, attributes, opt-out). Every query is scoped to the key's
business: another business's id is a 404, like an id that does not exist."""

from __future__ import annotations

from typing import Any

import msgspec

from services.api import access, inputs, queries
from services.api import schemas as s
from services.api.errors import conflict, not_found
from services.api.ids import contact_id
from services.api.projections import contacts as contacts_model
from services.api.projections import conversations as conversations_model
from services.api.routes import Call, Reply, created, paging
from services.api.writes import Write, write
from shared.crypto import erased
from shared.events.business import ContactCreated, ContactUpdated, contact_stream
from shared.eventstore import NO_STREAM, WrongExpectedVersion, new

STATES = ("bot", "waiting", "agent", "closed")
CONTACTS = (contacts_model.NAME,)


async def list_numbers(call: Call) -> Reply:
    limit, cursor = paging(call)
    return Reply(200, await queries.list_numbers(call.deps.pool, call.business_id, limit, cursor))


async def get_number(call: Call) -> Reply:
    number = call.path("phone_number_id", "number")
    found = await queries.get_number(call.deps.pool, call.business_id, number)
    if found is None:
        raise not_found("number")
    return Reply(200, found)


async def _own_number(call: Call, number: str | None) -> None:
    """A filter naming another business's number is a 404, not an empty list."""
    if (
        number is not None
        and await queries.get_number(call.deps.pool, call.business_id, number) is None
    ):
        raise not_found("number")


# --- conversations and messages ------------------------------------------------------------


async def list_conversations(call: Call) -> Reply:
    limit, cursor = paging(call, "state", "assignee", "tag", "phone_number_id", "contact_id")
    number = inputs.query_text(call.request, "phone_number_id", 32)
    await _own_number(call, number)
    page = await queries.list_conversations(
        call.deps.pool,
        call.business_id,
        limit,
        cursor,
        state=inputs.query_choice(call.request, "state", STATES),
        assignee=inputs.query_text(call.request, "assignee"),
        tag=inputs.query_text(call.request, "tag", 100),
        phone_number_id=number,
        contact_id=inputs.query_text(call.request, "contact_id", 100),
    )
    await access.record_listed(call, [c.contact.id for c in page.data])
    return Reply(200, page)


async def conversation_of(call: Call, conversation: str) -> s.Conversation:
    """The business's conversation, or 404 once the conversations read model has caught up
    with the log (a webhook may have opened it a moment ago)."""
    found = await queries.get_conversation(call.deps.pool, call.business_id, conversation)
    if found is None and await call.deps.consistency.settle((conversations_model.NAME,)):
        found = await queries.get_conversation(call.deps.pool, call.business_id, conversation)
    if found is None:
        raise not_found("conversation")
    return found


async def get_conversation(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    found = await conversation_of(call, call.path("conversation_id", "conversation"))
    await access.record(call, found.contact.id, "conversation")
    return Reply(200, found)


async def list_conversation_messages(call: Call) -> Reply:
    limit, cursor = paging(call)
    conversation = call.path("conversation_id", "conversation")
    found = await conversation_of(call, conversation)
    page = await queries.list_messages(
        call.deps.pool, call.business_id, conversation, limit, cursor
    )
    await access.record(call, found.contact.id, "messages")
    return Reply(200, page)


async def get_message(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    found = await queries.get_message(
        call.deps.pool, call.business_id, call.path("message_id", "message")
    )
    if found is None:
        raise not_found("message")
    contact = await access.contact_of_conversation(
        call.deps.pool, call.business_id, found.conversation_id
    )
    await access.record(call, contact, "message")
    return Reply(200, found)


# --- contacts ------------------------------------------------------------------------------


async def list_contacts(call: Call) -> Reply:
    limit, cursor = paging(call, "tag", "q")
    page = await queries.list_contacts(
        call.deps.pool,
        call.business_id,
        limit,
        cursor,
        tag=inputs.query_text(call.request, "tag", 100),
        q=inputs.query_text(call.request, "q", 100),
    )
    await access.record_listed(call, [c.id for c in page.data])
    return Reply(200, page)


async def contact_of(call: Call, contact: str) -> s.Contact:
    """The business's contact, or 404 once the contacts read model has caught up with the
    log (a webhook, or a conversation's answer naming it, may be a moment ahead of it)."""
    found = await queries.get_contact(call.deps.pool, call.business_id, contact)
    if found is None and await call.deps.consistency.settle(CONTACTS):
        found = await queries.get_contact(call.deps.pool, call.business_id, contact)
    if found is None:
        raise not_found("contact")
    return found


async def get_contact(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    found = await contact_of(call, call.path("contact_id", "contact"))
    await access.record(call, found.id, "contact")
    return Reply(200, found)


async def create_contact(call: Call) -> Reply:
    body, data = await inputs.body(call.request, s.CreateContact)
    business = call.business_id

    async def work(w: Write) -> Reply:
        known = await queries.customer_of(w.conn, business, body.wa_id)
        if known is not None:
            existing = contact_id(business, known)
            raise conflict("contact_exists", "a contact has this wa_id", contact_id=existing)
        # Someone erased before is a new contact (their id with the erasure's epoch).
        customer = await erased.current_key(w.conn, business, body.wa_id)
        the_id = contact_id(business, customer)
        event = ContactCreated(
            business_id=business,
            contact_id=the_id,
            customer=customer,
            wa_id=body.wa_id,
            name=body.name,
            tags=body.tags,
            attributes=body.attributes,
            actor=call.actor.name,
        )
        try:
            await w.append(
                contact_stream(business, the_id),
                [new(event, metadata=call.actor.metadata)],
                NO_STREAM,
            )
        except WrongExpectedVersion:
            raise conflict(
                "contact_exists", "a contact has this wa_id", contact_id=the_id
            ) from None
        now = await w.conn.fetchval("SELECT now()")  # the event's recorded_at
        answer = s.Contact(
            id=the_id,
            name=body.name,
            tags=body.tags,
            attributes=body.attributes,
            marketing_opt_out=False,
            first_seen_at=now,
            last_seen_at=now,
            wa_id=body.wa_id,
        )
        return Reply(201, answer)

    return await created(call, data, work, wait=CONTACTS)


async def update_contact(call: Call) -> Reply:
    the_id = call.path("contact_id", "contact")
    body, _ = await inputs.body(call.request, s.PatchContact)
    business = call.business_id
    await contact_of(call, the_id)
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("tags", "attributes", "marketing_opt_out")
        if getattr(body, name) is not msgspec.UNSET
    }
    position = None
    if changes:
        event = ContactUpdated(
            business_id=business, contact_id=the_id, actor=call.actor.name, **changes
        )
        async with write(call.deps.pool) as w:
            await w.append(
                contact_stream(business, the_id), [new(event, metadata=call.actor.metadata)]
            )
            position = w.position
    await call.deps.consistency.wait(position, CONTACTS)
    return Reply(200, await queries.get_contact(call.deps.pool, business, the_id))
