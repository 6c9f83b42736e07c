"""The conversation as a state machine: its state, what each input decides, and how the
decided events evolve the state. Pure: no I/O, no broker, no database.

A conversation answers its customer's messages in inbox order (`seq`). It is in one of
three phases:
- `Ready`: the next customer message can be handled;
- `AwaitingMedia(seq)`: the media service is processing the file of message `seq`; the
  customer's later messages wait in the inbox until its answer makes the turn;
- `AwaitingVoice(seq)`: the media service is speaking the reply to `seq`; later messages
  wait until the voice note (or the text instead) has gone out, so replies keep one order.

`decide(state, input)` returns the events an input leads to; `evolve(state, event)` applies
one. The reply itself is written by a responder (an LLM, or rules) outside this module: the
application decides `Receive`, asks the responder when the turn is to be answered, and
decides `Answer` with what it wrote.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.conversation import media
from services.conversation.interpret import interpret
from shared.bot import BotState, Emit, Handoff, Outcome
from shared.crypto.erased import address
from shared.events.conversation import (
    BotActed,
    BotReplied,
    BotStateChanged,
    BusinessReleased,
    BusinessWrote,
    Closed,
    CustomerDeleted,
    CustomerEdited,
    CustomerEvent,
    CustomerReacted,
    CustomerWrote,
    FlowCompleted,
    FlowTimedOut,
    HandedOff,
    MediaRequested,
    PhoneAppWrote,
    Released,
    Reopened,
    ReplyNotSpoken,
    ReplySpoken,
    ReplyWithdrawn,
    SystemNotice,
    TurnFailed,
    UnsupportedReceived,
    handling_event_id,
)
from shared.events.dedup import EchoReceived, MessageReceived
from shared.eventstore import Event, event_id_for
from shared.schemas import MediaProcessed, SendBusinessMessage

# --- phases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class AwaitingMedia:
    seq: int


@dataclass(frozen=True)
class AwaitingVoice:
    seq: int


Phase = Ready | AwaitingMedia | AwaitingVoice
READY = Ready()

# Who answers the customer (the contract's conversation states).
BOT, WAITING, AGENT, CLOSED = "bot", "waiting", "agent", "closed"


# --- state ----------------------------------------------------------------------------------


@dataclass
class Turn:
    role: str  # "customer" or "bot"
    text: str
    wamid: str = ""
    seq: int = -1
    reactions: list[str] = field(default_factory=list)
    edited: bool = False


@dataclass
class Conversation:
    conversation_id: str
    version: int = -1  # last stream version (optimistic concurrency)
    last_seq: int = -1  # the last inbox message handled (or being handled)
    phase: Phase = READY
    phone_number_id: str = ""
    customer: str = ""  # the customer's key
    address: str = ""  # where replies go (see `recipient`)
    customer_name: str = ""
    turns: list[Turn] = field(default_factory=list)
    replies: dict[int, BotReplied] = field(default_factory=dict)  # the first reply per seq
    more_replies: dict[int, list[BotReplied]] = field(default_factory=dict)  # a bot's others
    spoken: dict[int, ReplySpoken | ReplyNotSpoken | ReplyWithdrawn] = field(default_factory=dict)
    media_requests: dict[int, MediaRequested] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    business: dict[str, BusinessWrote] = field(default_factory=dict)  # by message id
    held: list[str] = field(default_factory=list)  # business messages behind a voice reply
    # Who answers: `bot`, `waiting` (handed off, nobody assigned), `agent`, or `closed`.
    mode: str = BOT
    assignee: str | None = None
    handling: set[str] = field(default_factory=set)  # handling requests already recorded
    echoes: set[str] = field(default_factory=set)  # wamids of the phone app's messages
    bot: BotState = field(default_factory=BotState)  # where the bot is with the customer
    # The contact as the bot knows it from its own actions (tags, attributes, opt-out).
    tags: set[str] = field(default_factory=set)
    attributes: dict[str, str] = field(default_factory=dict)
    opted_out: bool = False

    def __post_init__(self) -> None:
        if not self.phone_number_id:
            # Rows recorded before the address was kept in the events: the id says it.
            self.phone_number_id, _, self.customer = self.conversation_id.partition(".")

    def recent(self, limit: int) -> list[Turn]:
        return self.turns[-limit:] if limit > 0 else []

    def awaits(self, seq: int) -> bool:
        return isinstance(self.phase, AwaitingMedia | AwaitingVoice) and self.phase.seq == seq


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receive:
    """The customer message `seq` is next in the inbox. `trigger` names the broker message
    being handled (a media request records it); `media_service`: files go to it."""

    seq: int
    message: MessageReceived
    trigger: str
    media_service: bool


@dataclass(frozen=True)
class Answer:
    """The responder's reply to the customer turn `seq`."""

    seq: int
    text: str
    responder: str
    in_reply_to: str
    speak: bool = False
    received_at: float = 0.0


@dataclass(frozen=True)
class BotTurn:
    """What the bot made of the customer turn `seq` (shared/bot's finished Outcome)."""

    seq: int
    outcome: Outcome
    in_reply_to: str
    speak: bool = False
    received_at: float = 0.0
    business_id: str = ""
    contact_id: str = ""


@dataclass(frozen=True)
class MediaResult:
    result: MediaProcessed


@dataclass(frozen=True)
class VoiceResult:
    """The media service's answer to a voice reply: a `media_id`, or why not (`reason`)."""

    seq: int
    command_id: str
    media_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Business:
    """A message the business sends (through the API): recorded in the customer's order."""

    message: SendBusinessMessage
    text: str


@dataclass(frozen=True)
class Handle:
    """Change who answers: `handoff` (to `assignee`, or waiting), `release`, `close`."""

    request_id: str
    action: str
    assignee: str | None = None
    by: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PhoneApp:
    """A message the business sent from its WhatsApp phone app (dedup's echo)."""

    echo: EchoReceived


@dataclass(frozen=True)
class Idle:
    """Nobody wrote since the conversation's event `since` (the idle timer): `active` says
    whether an activity was recorded after it all the same (the timer was behind)."""

    since: int
    active: bool


@dataclass(frozen=True)
class GiveUp:
    """What `seq` waited for (or the message itself) could not be handled."""

    seq: int
    error: str


@dataclass(frozen=True)
class Expire:
    """A flow's time-out on the timer: shared/bot's `expired` outcome for the flow whose
    deadline was `deadline` (None: no bot any more; the flow ends in silence)."""

    deadline: float
    outcome: Outcome | None


Input = (
    Receive
    | Answer
    | BotTurn
    | MediaResult
    | VoiceResult
    | Business
    | Handle
    | PhoneApp
    | Idle
    | GiveUp
    | Expire
)


def answers(state: Conversation) -> bool:
    """Whether the bot answers the customer now (not while a person has the conversation)."""
    return state.mode == BOT


class OutOfOrder(Exception):
    """An input the conversation is not in a phase to take: the application checks first."""


# --- decide ---------------------------------------------------------------------------------


def decide(state: Conversation, given: Input) -> list[Event]:
    match given:
        case Receive():
            return _receive(state, given)
        case Answer():
            return [
                BotReplied(
                    seq=given.seq,
                    text=given.text,
                    in_reply_to=given.in_reply_to,
                    responder=given.responder,
                    command_id=reply_command_id(state.conversation_id, given.seq),
                    speak=given.speak,
                    received_at=given.received_at,
                )
            ]
        case BotTurn():
            return _bot_turn(state, given)
        case Expire():
            return _expire(state, given)
        case MediaResult(result=result):
            if state.phase != AwaitingMedia(result.seq):
                return []
            request = state.media_requests[result.seq]
            text, detail = media.media_turn(request, result)
            return [
                CustomerWrote(
                    seq=result.seq,
                    wamid=request.wamid,
                    type=request.type,
                    customer_name=request.customer_name,
                    timestamp=request.timestamp,
                    phone_number_id=request.phone_number_id,
                    customer=request.customer,
                    address=request.address,
                    text=text,
                    detail=detail,
                )
            ]
        case VoiceResult():
            if state.phase != AwaitingVoice(given.seq):
                return []
            if not answers(state):
                return _withdraw(state, given.seq)
            if given.media_id:
                spoken: Event = ReplySpoken(
                    seq=given.seq, command_id=given.command_id, media_id=given.media_id
                )
            else:
                spoken = ReplyNotSpoken(
                    seq=given.seq, command_id=given.command_id, reason=given.reason
                )
            return [spoken, *_release(state, given.seq)]
        case Business(message=message):
            if message.message_id in state.business:
                return []  # recorded already: a redelivery
            wrote = [
                BusinessWrote(
                    message_id=message.message_id,
                    author=message.author,
                    actor=message.actor,
                    type=message.message_type,
                    payload=message.payload,
                    text=given.text,
                    to=message.to,
                    seq=state.last_seq,
                    held=isinstance(state.phase, AwaitingVoice),
                )
            ]
            return wrote + _agent_owns(state, message)
        case Handle():
            return _handle(state, given)
        case PhoneApp():
            return _phone_app(state, given.echo)
        case Idle():
            return _idle(state, given)
        case GiveUp():
            if isinstance(state.phase, AwaitingVoice) and state.phase.seq == given.seq:
                if not answers(state):
                    return _withdraw(state, given.seq)
                reply = state.replies[given.seq]
                return [
                    ReplyNotSpoken(seq=given.seq, command_id=reply.command_id, reason="given_up"),
                    *_release(state, given.seq),
                ]
            if state.awaits(given.seq) or given.seq > state.last_seq:
                return [TurnFailed(seq=given.seq, error=given.error[:1000])]
            return []
    raise TypeError(f"not an input: {given!r}")


def _bot_turn(state: Conversation, given: BotTurn) -> list[Event]:
    outcome = given.outcome
    bodies = [*outcome.replies, *outcome.after]
    command = reply_command_id(state.conversation_id, given.seq)
    events: list[Event] = []
    for index, body in enumerate(bodies):
        plain = body.get("type") == "text"
        events.append(
            BotReplied(
                seq=given.seq,
                index=index,
                text=_said(body),
                in_reply_to=given.in_reply_to,
                responder=f"bot:{outcome.handled_by}" if outcome.handled_by else "bot",
                command_id=command if index == 0 else f"{command}.{index}",
                # Spoken only when the whole answer is one plain text.
                speak=given.speak and plain and len(bodies) == 1,
                received_at=given.received_at,
                payload=None if plain else body,
            )
        )
    if msgspec.to_builtins(outcome.state) != msgspec.to_builtins(state.bot):
        events.append(BotStateChanged(seq=given.seq, state=msgspec.to_builtins(outcome.state)))
    kept = [a for a in outcome.actions if not isinstance(a, Handoff | Emit)]
    if kept:
        events.append(
            BotActed(
                seq=given.seq,
                business_id=given.business_id,
                contact_id=given.contact_id,
                actions=[
                    {"kind": type(a).__struct_config__.tag, **msgspec.to_builtins(a)} for a in kept
                ],
            )
        )
    for action in outcome.actions:
        if isinstance(action, Emit):
            events.append(
                FlowCompleted(
                    seq=given.seq,
                    name=action.name,
                    flow=action.flow,
                    slots=action.slots,
                    address=recipient(state),
                )
            )
    handoff = next((a for a in outcome.actions if isinstance(a, Handoff)), None)
    if handoff is not None and state.mode == BOT:
        events.append(
            HandedOff(
                request_id=f"bot:{state.conversation_id}:{given.seq}",
                by="bot",
                reason=handoff.reason,
                seq=given.seq,
            )
        )
    return events


def _expire(state: Conversation, given: Expire) -> list[Event]:
    """The flow ends if the customer is still where the deadline was set (else they have
    answered meanwhile, or a timer fired twice: nothing). Its message goes after what the
    bot said to the last customer message, in the same numbering, when the bot answers."""
    bot = state.bot
    if not bot.flow or bot.deadline != given.deadline:
        return []
    seq = state.last_seq
    after = BotState(away_at=bot.away_at)
    events: list[Event] = []
    if given.outcome is not None:
        after = given.outcome.state
        if answers(state):
            first = (1 if seq in state.replies else 0) + len(state.more_replies.get(seq, []))
            command = reply_command_id(state.conversation_id, seq)
            for i, body in enumerate(given.outcome.replies):
                index = first + i
                events.append(
                    BotReplied(
                        seq=seq,
                        index=index,
                        text=_said(body),
                        responder="bot:timeout",
                        command_id=command if index == 0 else f"{command}.{index}",
                        payload=None if body.get("type") == "text" else body,
                    )
                )
    events.append(
        FlowTimedOut(
            seq=seq,
            deadline=given.deadline,
            flow=bot.flow,
            step=bot.step,
            state=msgspec.to_builtins(after),
        )
    )
    return events


def _said(body: dict[str, Any]) -> str:
    """A reply's words, for the history and the read models: the text, or what an
    interactive message or a template says."""
    kind = str(body.get("type", ""))
    inner = body.get(kind) if isinstance(body.get(kind), dict) else {}
    if kind == "text":
        return str(inner.get("body", ""))
    if kind == "interactive":
        text = inner.get("body", {}).get("text", "") if isinstance(inner.get("body"), dict) else ""
        return str(text)
    if kind == "template":
        return f"[template {inner.get('name', '')}]"
    return f"[{kind}]"


def _withdraw(state: Conversation, seq: int) -> list[Event]:
    """A person took over while the bot's reply to `seq` was being spoken: it is not sent."""
    reply = state.replies[seq]
    return [ReplyWithdrawn(seq=seq, command_id=reply.command_id), *_release(state, seq)]


def _handle(state: Conversation, given: Handle) -> list[Event]:
    """A person's request is recorded even when it changes nothing (a release of a
    conversation the bot has): whoever asked finds its outcome in the store by its id."""
    if given.request_id in state.handling:
        return []  # recorded already: a redelivery
    seq = state.last_seq
    if given.action == "handoff":
        return [
            HandedOff(
                request_id=given.request_id,
                assignee=given.assignee,
                by=given.by,
                reason=given.reason,
                seq=seq,
            )
        ]
    if given.action == "release":
        return [Released(request_id=given.request_id, by=given.by, reason=given.reason, seq=seq)]
    if given.action == "close":
        return [Closed(request_id=given.request_id, by=given.by, seq=seq)]
    raise ValueError(f"unknown handling action {given.action!r}")


# A console user's id (services/api/users.py); an agent's API key is nobody to assign.
USER_PREFIX = "usr_"


def _agent_owns(state: Conversation, message: SendBusinessMessage) -> list[Event]:
    """An agent who writes into a conversation the bot has (or a closed one) takes it: the
    bot must not answer the customer's reply to a person (evolution-api #2143). A console
    user owns it; an agent's key leaves it waiting for one. A user answering a waiting
    conversation takes it too."""
    if message.author != "agent":
        return []
    user = message.actor if message.actor.startswith(USER_PREFIX) else None
    if state.mode in (AGENT,) or (state.mode == WAITING and user is None):
        return []
    return [
        HandedOff(
            request_id=f"agent-wrote:{message.message_id}",
            assignee=user,
            by=message.actor,
            reason="agent_wrote",
            seq=state.last_seq,
        )
    ]


# What keeps a person's conversation from going back to the bot when idle.
ACTIVITY = (CustomerEvent, MediaRequested, BusinessWrote, PhoneAppWrote, HandedOff)


def _idle(state: Conversation, given: Idle) -> list[Event]:
    """Back to the bot after the idle time (the explicit release's event, by `idle`), once
    per idle spell (its request id names the event it counts from)."""
    request = f"idle:{given.since}"
    if given.active or state.mode not in (AGENT, WAITING) or request in state.handling:
        return []
    return [Released(request_id=request, by="idle", reason="idle", seq=state.last_seq)]


def _phone_app(state: Conversation, echo: EchoReceived) -> list[Event]:
    """A person answered from the business's phone app: recorded in the customer's order,
    and the bot stops (a peer's complaint: the bot talked over the owner). The conversation
    waits for a person in the console; one that a person has already stays theirs."""
    if echo.wamid in state.echoes:
        return []  # recorded already: a redelivery
    seq = state.last_seq
    wrote = PhoneAppWrote(
        wamid=echo.wamid,
        type=echo.type,
        text=_said(echo.message),
        timestamp=echo.timestamp,
        seq=seq,
    )
    if state.mode in (AGENT, WAITING):
        return [wrote]
    handoff = HandedOff(
        request_id=f"phone-app:{echo.wamid}", by="phone-app", reason="phone_app_reply", seq=seq
    )
    return [wrote, handoff]


def _release(state: Conversation, seq: int) -> list[Event]:
    return [BusinessReleased(seq=seq, message_ids=list(state.held))] if state.held else []


def _receive(state: Conversation, given: Receive) -> list[Event]:
    if state.phase != READY or given.seq != state.last_seq + 1:
        raise OutOfOrder(f"seq {given.seq} while at {state.last_seq} ({state.phase})")
    received = given.message
    # A customer writing to a closed conversation reopens it, with the bot.
    reopened: list[Event] = [Reopened(seq=given.seq)] if state.mode == CLOSED else []
    if given.media_service and media.is_media(received.message):
        return [*reopened, media.requested(given.seq, received, given.trigger)]
    meaning = interpret(received.message)
    base = {
        "seq": given.seq,
        "wamid": received.wamid,
        "type": received.type,
        "customer_name": received.customer_name,
        "timestamp": received.timestamp,
        "phone_number_id": received.phone_number_id,
        "customer": received.customer,
        "address": received.reply_to(),
    }
    detail = meaning.detail or {}
    recorded: Event
    match meaning.kind:
        case "turn":
            recorded = CustomerWrote(**base, text=meaning.text, detail=detail)
        case "reaction":
            recorded = CustomerReacted(**base, target=meaning.target, emoji=meaning.text)
        case "edit":
            recorded = CustomerEdited(**base, target=meaning.target, text=meaning.text)
        case "delete":
            recorded = CustomerDeleted(**base, target=meaning.target)
        case "system":
            recorded = SystemNotice(**base, body=meaning.text, detail=detail)
        case _:
            recorded = UnsupportedReceived(**base, detail=detail)
    return [*reopened, recorded]


def reply_command_id(conversation_id: str, seq: int) -> str:
    """The send's idempotency key: one per customer message answered, whatever its form."""
    return str(event_id_for("reply", conversation_id, str(seq)))


# Event ids: one per (kind, conversation, seq), the same keys as ever, so a turn decided
# again after a crash is recognised as already recorded.
_ID_KEYS = {
    CustomerWrote: "customer-wrote",
    CustomerReacted: "customer-reacted",
    CustomerEdited: "customer-edited",
    CustomerDeleted: "customer-deleted",
    SystemNotice: "system-notice",
    UnsupportedReceived: "unsupported",
    MediaRequested: "media-requested",
    BotReplied: "bot-replied",
    ReplySpoken: "reply-spoken",
    ReplyNotSpoken: "reply-not-spoken",
    ReplyWithdrawn: "reply-withdrawn",
    TurnFailed: "turn-failed",
    Reopened: "reopened",
    BotStateChanged: "bot-state",
    BotActed: "bot-acted",
    FlowCompleted: "flow-completed",
}


def event_id(conversation_id: str, event: Event) -> uuid.UUID:
    if isinstance(event, FlowCompleted):
        return event_id_for("flow-completed", conversation_id, str(event.seq), event.name)
    if isinstance(event, FlowTimedOut):
        return event_id_for("flow-timed-out", conversation_id, repr(event.deadline))
    if isinstance(event, BotReplied) and event.index:
        return event_id_for("bot-replied", conversation_id, str(event.seq), str(event.index))
    if isinstance(event, BusinessWrote):  # one per message the business sent, by its id
        return event_id_for("business-wrote", conversation_id, event.message_id)
    if isinstance(event, HandedOff | Released | Closed):  # one per request
        return handling_event_id(type(event).__name__, conversation_id, event.request_id)
    if isinstance(event, PhoneAppWrote):
        return event_id_for("phone-app-wrote", conversation_id, event.wamid)
    if isinstance(event, BusinessReleased):
        return event_id_for("business-released", conversation_id, str(event.seq))
    return event_id_for(_ID_KEYS[type(event)], conversation_id, str(event.seq))  # type: ignore[attr-defined]


# --- evolve ---------------------------------------------------------------------------------


def evolve(state: Conversation, event: Event) -> Conversation:
    """Apply one event (in place: the state is the fold of its stream, kept between
    messages) and return the state."""
    seq = getattr(event, "seq", -1)
    state.last_seq = max(state.last_seq, seq)
    if isinstance(event, CustomerEvent):
        _customer(state, event.customer_name, event.phone_number_id, event.customer, event.address)
    match event:
        case CustomerWrote():
            state.turns.append(Turn("customer", event.text, event.wamid, seq))
            if state.phase == AwaitingMedia(seq):
                state.phase = READY
        case MediaRequested():
            _customer(
                state, event.customer_name, event.phone_number_id, event.customer, event.address
            )
            state.media_requests[seq] = event
            state.phase = AwaitingMedia(seq)
        case BotReplied():
            state.turns.append(Turn("bot", event.text, "", seq))
            if event.index == 0:
                state.replies[seq] = event
            else:
                state.more_replies.setdefault(seq, []).append(event)
            if event.speak:
                state.phase = AwaitingVoice(seq)
        case ReplySpoken() | ReplyNotSpoken() | ReplyWithdrawn():
            state.spoken[seq] = event
            if state.phase == AwaitingVoice(seq):
                state.phase = READY
        case CustomerReacted():
            for turn in _turns_of(state, event.target):
                turn.reactions = [event.emoji] if event.emoji else []
        case CustomerEdited():
            for turn in _turns_of(state, event.target):
                turn.text, turn.edited = event.text, True
        case CustomerDeleted():
            state.turns = [t for t in state.turns if t.wamid != event.target or not t.wamid]
        case TurnFailed():
            state.failed[seq] = event.error
            if state.awaits(seq):
                state.phase = READY
        case BusinessWrote():
            state.turns.append(Turn("business", event.text, "", seq))
            state.business[event.message_id] = event
            if event.held:
                state.held.append(event.message_id)
        case PhoneAppWrote():
            state.turns.append(Turn("business", event.text, event.wamid, seq))
            state.echoes.add(event.wamid)
        case BusinessReleased():
            state.held = [m for m in state.held if m not in event.message_ids]
        case HandedOff():
            state.mode, state.assignee = (AGENT if event.assignee else WAITING), event.assignee
            state.handling.add(event.request_id)
        case Released():
            state.mode, state.assignee = BOT, None
            state.handling.add(event.request_id)
        case Closed():
            state.mode, state.assignee = CLOSED, None
            state.handling.add(event.request_id)
        case Reopened():
            state.mode, state.assignee = BOT, None
        case BotStateChanged() | FlowTimedOut():
            state.bot = msgspec.convert(event.state, BotState)
        case BotActed():
            _acted(state, event.actions)
    return state


def _acted(state: Conversation, actions: list[dict[str, Any]]) -> None:
    for action in actions:
        match action.get("kind"):
            case "tag":
                state.tags.add(str(action.get("name")))
            case "untag":
                state.tags.discard(str(action.get("name")))
            case "attribute":
                state.attributes[str(action.get("name"))] = str(action.get("value", ""))
            case "opt_out":
                state.opted_out = True
            case "opt_in":
                state.opted_out = False


def _customer(
    state: Conversation, name: str, phone_number_id: str, customer: str, address: str
) -> None:
    if name:
        state.customer_name = name
    if phone_number_id and customer:
        state.phone_number_id, state.customer = phone_number_id, customer
    if address:
        state.address = address


def recipient(state: Conversation) -> str:
    """The id a reply goes to: the one the customer's key was made from (their messages
    carry it), else (rows from before it was kept) their key, which was that id."""
    return state.address or address(state.customer)


def _turns_of(state: Conversation, wamid: str) -> list[Turn]:
    return [t for t in state.turns if wamid and t.wamid == wamid]


def fold(conversation_id: str, events: list[tuple[int, Event]]) -> Conversation:
    """The state a stream's (version, event) pairs make."""
    state = Conversation(conversation_id)
    for version, event in events:
        evolve(state, event)
        state.version = version
    return state
