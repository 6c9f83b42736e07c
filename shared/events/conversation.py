"""Events written by conversation: what each customer message meant and how the bot
answered it, in the customer's order. Stream `conversation-<conversation_id>`."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from shared.eventstore import Event, event_id_for
from shared.eventstore.mapper import Upcaster


def conversation_stream(conversation_id: str) -> str:
    return f"conversation-{conversation_id}"


class CustomerEvent(Event, kw_only=True):
    """What every record of a customer message says: its place in the customer's order
    (`seq`, the inbox version), its wamid and Meta's timestamp."""

    seq: int
    wamid: str = ""
    type: str | None = None  # the WhatsApp message type
    customer_name: str = ""
    timestamp: str | None = None
    phone_number_id: str = ""  # "" in rows recorded before it was kept here
    customer: str = ""  # the customer's key (a pseudonym: it names their streams)
    # Where replies go: the id Meta gave them (wa_id, else user_id). "" in rows recorded
    # before it was kept here, whose key was that id.
    address: str = ""


class CustomerWrote(CustomerEvent, kw_only=True):
    """A customer message that makes a turn of the conversation (text, a button, a
    location, a media file as described or transcribed, ...): the bot answers it."""

    text: str
    detail: dict[str, Any] = {}


class CustomerReacted(CustomerEvent, kw_only=True):
    """The customer reacted to a message with an emoji ("" removes the reaction)."""

    target: str
    emoji: str = ""  # "" removes the reaction


class CustomerEdited(CustomerEvent, kw_only=True):
    """The customer edited one of their messages."""

    target: str
    text: str = ""


class CustomerDeleted(CustomerEvent, kw_only=True):
    """The customer deleted one of their messages: it leaves the history the bot sees."""

    target: str


class SystemNotice(CustomerEvent, kw_only=True):
    """A system message in the chat (the customer changed number, ...)."""

    body: str = ""
    detail: dict[str, Any] = {}


class UnsupportedReceived(CustomerEvent, kw_only=True):
    """A message WhatsApp could not deliver or the bot cannot read: recorded, not answered."""

    detail: dict[str, Any] = {}


class MediaRequested(Event, kw_only=True):
    """A customer's media message went to the media service; the customer's later messages
    wait until its answer (MediaProcessed) makes the turn. `trigger` names the broker
    message whose handling asked, so that its redelivery asks again."""

    seq: int
    wamid: str
    type: str = ""
    kind: str
    media_id: str | None = None
    voice: bool = False
    media: dict[str, Any] = {}
    described: str = ""
    phone_number_id: str
    customer: str
    customer_name: str = ""
    address: str = ""  # as CustomerEvent's
    timestamp: str | None = None
    received_at: float = 0.0
    trigger: str = ""


class BotReplied(Event, kw_only=True):
    """The bot's reply to the customer message `seq`, decided before it is sent. With
    `speak`, the conversation waits for the media service to prepare it as a voice note
    (ReplySpoken, or ReplyNotSpoken: then it goes as text) before it goes out."""

    schema: ClassVar[int] = 2

    seq: int
    text: str
    in_reply_to: str = ""  # the wamid answered
    responder: str = ""  # who wrote it: openai, offline, offline-fallback, ...
    command_id: str  # the send's idempotency key, whatever form the reply takes
    speak: bool = False
    received_at: float = 0.0  # when the customer message reached ingress
    index: int = 0  # a bot's turn may say several things: their order
    payload: dict[str, Any] | None = None  # the Cloud API body when not plain text (buttons, ...)


class BotStateChanged(Event, kw_only=True):
    """Where the bot is with the customer after the turn `seq`: the flow, its step and the
    slots collected so far (shared/bot's BotState)."""

    seq: int
    state: dict[str, Any]


class FlowTimedOut(Event, kw_only=True):
    """The customer left a bot flow's step unanswered past the flow's `timeout` (`deadline`,
    Unix seconds): the flow ended, on the conversation's timer, with its `timeout_message`
    (BotReplied events beside this one, under the customer message `seq` last handled).
    `state`: the bot's state after (shared/bot's BotState)."""

    seq: int
    deadline: float
    flow: str = ""
    step: str = ""
    state: dict[str, Any] = {}


class BotActed(Event, kw_only=True):
    """What the bot did for the turn `seq` beyond replying: tag or untag the contact, set an
    attribute, opt out of or back into marketing (each `{"kind", ...}`, shared/bot's actions).
    The api's contacts follow them."""

    seq: int
    business_id: str = ""
    contact_id: str = ""
    actions: list[dict[str, Any]]


class FlowCompleted(Event, kw_only=True):
    """A bot flow ended with an `emit`: its slots, for the business's CRMs (`flow.completed`)."""

    seq: int
    name: str
    flow: str = ""
    slots: dict[str, str] = {}
    address: str = ""  # the customer's id Meta knows ("" in older rows: the key was it)


class ReplySpoken(Event, kw_only=True):
    """The media service prepared the reply `seq` as a voice note (uploaded as `media_id`)."""

    seq: int
    command_id: str
    media_id: str


class ReplyNotSpoken(Event, kw_only=True):
    """The reply `seq` could not be spoken (`reason`): it goes out as text."""

    seq: int
    command_id: str
    reason: str = ""


class ReplyWithdrawn(Event, kw_only=True):
    """The bot's reply `seq` is not sent: a person took the conversation over while it was
    being spoken (the bot never talks over a human). Messages held behind it go out."""

    seq: int
    command_id: str
    reason: str = "handed_off"


class BusinessWrote(Event, kw_only=True):
    """A message the business sent through the API (by a key or an agent), recorded in the
    conversation's order: the bot sees it in the history as said by the business. It goes
    out through outbound under `message_id`."""

    message_id: str
    author: str  # business or agent
    actor: str = ""  # the API key (or user) that sent it
    type: str  # the Cloud API message type
    payload: dict[str, Any]  # the Graph API message body, minus messaging_product/to
    text: str = ""  # what it says, for the history: a text's body, a caption, a template's name
    to: str = ""  # the id it goes to (wa_id or user_id); "" in older rows: the customer's key
    seq: int = -1  # the customer message it follows (the last handled when it was recorded)
    # Held back while a voice reply decided before it is prepared, so that the two never
    # cross; released (BusinessReleased) when that reply goes out.
    held: bool = False


class BusinessReleased(Event, kw_only=True):
    """The business messages held behind a voice reply go out, now that it has."""

    seq: int  # the voice reply's
    message_ids: list[str]


class PhoneAppWrote(Event, kw_only=True):
    """A message the business sent from its WhatsApp phone app (an echo): already delivered,
    never sent by outbound; a person answering, so the conversation is handed off with it."""

    wamid: str
    type: str
    text: str = ""  # what it says, for the history
    timestamp: str = ""  # Meta's unix seconds
    seq: int = -1  # the last customer message handled when it came


class HandedOff(Event, kw_only=True):
    """A person takes the conversation over: `agent` with an assignee, `waiting` for one
    without. From then on the bot sends nothing in it until it is released."""

    request_id: str  # what asked for it (an API request, a bot rule, ...): its idempotency key
    assignee: str | None = None  # a user id
    by: str = ""  # who: a key or user id, `bot` (a rule or flow), `customer`, `phone-app`
    reason: str = ""
    seq: int = -1  # the last customer message handled when it happened


class Released(Event, kw_only=True):
    """The conversation goes back to the bot: it answers the next customer message."""

    request_id: str
    by: str = ""
    reason: str = ""
    seq: int = -1


class Closed(Event, kw_only=True):
    """The conversation is closed; the customer's next message reopens it, with the bot."""

    request_id: str
    by: str = ""
    seq: int = -1


def handling_event_id(kind: str, conversation_id: str, request_id: str) -> uuid.UUID:
    """The id of the event a handling request records (`HandedOff`, `Released`, `Closed`):
    one per request, so the api can find its outcome in the store by id."""
    return event_id_for(kind, conversation_id, request_id)


class Reopened(Event, kw_only=True):
    """A customer message reopened a closed conversation, with the bot answering."""

    seq: int


class TurnFailed(Event, kw_only=True):
    """The customer message `seq` could not be handled and was given up (dead-lettered):
    the conversation moves on to the next one."""

    seq: int
    error: str = ""


def _bot_replied_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 marked voice replies `delivery: media, voice: true`: the media service sent
    them itself, so nothing waits for them any more."""
    data = {k: v for k, v in data.items() if k not in ("delivery", "voice")}
    return {**data, "speak": False}


EVENTS: tuple[type[Event], ...] = (
    CustomerWrote,
    CustomerReacted,
    CustomerEdited,
    CustomerDeleted,
    SystemNotice,
    UnsupportedReceived,
    MediaRequested,
    BotReplied,
    BotStateChanged,
    BotActed,
    FlowCompleted,
    FlowTimedOut,
    ReplySpoken,
    ReplyNotSpoken,
    ReplyWithdrawn,
    BusinessWrote,
    BusinessReleased,
    PhoneAppWrote,
    HandedOff,
    Released,
    Closed,
    Reopened,
    TurnFailed,
)
UPCASTERS: tuple[Upcaster, ...] = (Upcaster("BotReplied", 1, _bot_replied_v1),)
