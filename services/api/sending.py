"""`POST /v1/messages`: a business sends a message to a customer.

The body is checked as the Cloud API would (messages.py), the number and the customer are
resolved (a wa_id or a user_id is the contact's key; a customer never seen is known by the
`to` given), a template is checked against the synced one (templates.py: known, APPROVED,
its parameters, the marketing opt-out), and a free-form message needs the customer's 24 h
window open (the conversations read model, from Meta's timestamp of their last message):
closed or never opened is a 409 `window_closed`, and nothing goes to Meta. An accepted
message is a MessageRequested in `request-<message_id>`, durable before the 202; the
dispatcher hands it to the conversation. Its id derives from the key and the
Idempotency-Key, so a retry is the same message."""

from __future__ import annotations

from datetime import UTC, datetime

from services.api import inputs, limits, messages, queries, templates
from services.api import schemas as s
from services.api.errors import conflict, invalid, not_found, unavailable
from services.api.ids import conversation_id, message_id
from services.api.projections import conversations as conversations_model
from services.api.routes import Call, Reply, created
from services.api.writes import Write
from shared.crypto import erased
from shared.directory import DEFAULT_BUSINESS
from shared.events.business import MessageRequested, request_stream
from shared.eventstore import NO_STREAM, new

READ_MODELS = (conversations_model.NAME,)


async def resolve_number(call: Call, w: Write, given: str | None) -> str:
    business = call.business_id
    if given is not None:
        owner = await w.conn.fetchval(
            "SELECT business_id FROM directory_numbers WHERE phone_number_id = $1", given
        )
        if owner == business or (owner is None and _answers_every_number(call)):
            return given
        raise not_found("number")
    numbers = await queries.numbers_of(w.conn, business)
    if len(numbers) == 1:
        return numbers[0]
    why = "the business has several numbers" if numbers else "the business has no number"
    raise invalid("phone_number_id", f"required: {why}")


def _answers_every_number(call: Call) -> bool:
    """The default business with no WHATSAPP_PHONE_NUMBER_ID answers every number that no
    business registered, and so may send from one."""
    return call.business_id == DEFAULT_BUSINESS and not call.deps.settings.whatsapp_phone_number_id


async def send(call: Call) -> Reply:
    body, data = await inputs.body(call.request, messages.SendMessage)
    messages.check(body)
    bus = call.deps.bus
    if bus is None or not bus.ready:
        raise unavailable("the broker is unreachable")
    business = call.business_id
    principal = call.principal
    the_id = message_id(principal.key_id, inputs.idempotency_key(call.request))
    if body.template is not None:
        await templates.ensure_known(call, body.template.name)

    async def work(w: Write) -> Reply:
        number = await resolve_number(call, w, body.phone_number_id)
        customer = await queries.customer_for(w.conn, business, body.to)
        if customer is None:
            raise invalid("to", "no customer of this business has this key")
        conversation = conversation_id(number, customer)
        if body.type not in messages.OUTSIDE_WINDOW:
            _, until = await queries.conversation_window(w.conn, business, conversation)
            if until is None or until <= datetime.now(UTC):
                raise conflict(
                    "window_closed",
                    "the customer's 24 h window is closed (or never opened): send a template",
                    window_closed_at=until.isoformat().replace("+00:00", "Z") if until else None,
                )
        payload = messages.graph_payload(body)
        if body.template is not None:
            # Checked against the synced template before anything is recorded (a 422 naming
            # the parameter, never Meta's 132000 later), and the marketing opt-out; its
            # variables, when given, made into the components Meta takes.
            await templates.for_send(w, business, number, customer, payload["template"])
        quota = await w.conn.fetchval(
            "SELECT daily_send_quota FROM directory_businesses WHERE business_id = $1", business
        )
        event = MessageRequested(
            message_id=the_id,
            business_id=business,
            conversation_id=conversation,
            phone_number_id=number,
            to=customer,
            # The id given; for the key itself (the console gives it), the contact's.
            address=erased.sendable(body.to)
            or await queries.address_of(w.conn, business, customer),
            type=body.type,
            payload=payload,
            # A person in the console, or an agent's key: an agent's reply.
            author="agent" if principal.role == "agent" or principal.kind == "user" else "business",
            actor=principal.actor,
            idempotency_key=inputs.idempotency_key(call.request) or "",
        )
        appended = await w.append(
            request_stream(the_id),
            [new(event, "request", the_id, metadata=principal.audit)],
            NO_STREAM,
        )
        if not appended[0].duplicate:
            await limits.count_send(w.conn, business, quota)
        return Reply(
            202, s.MessageAccepted(id=the_id, status="queued", conversation_id=conversation)
        )

    reply = await created(call, data, work, wait=READ_MODELS)
    call.deps.sent()  # committed: the dispatcher need not wait for its next poll
    return reply
