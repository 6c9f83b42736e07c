"""Answer customer messages strictly in inbox order, whatever order the broker delivers.

The inbox stream's version is the customer's sequence number. The conversation remembers the
last one it handled; a message further ahead makes it catch up from the event store first,
and one already handled makes it publish again what it decided for it (the publish may have
been lost in a crash between commit and ack); outbound and media drop the duplicate.

Every handler is an async generator of the batches to publish, one per committed step, so
that the reply to an earlier message goes out before a later one is even considered, and
the mark-read (typing indicator) goes out before the responder is asked. Nothing is
published on the side: the bus publishes each batch, with confirms, before the next step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from services.conversation.bots import Bots
from services.conversation.botturn import bot_turn
from services.conversation.domain import (
    ACTIVITY,
    READY,
    Answer,
    AwaitingMedia,
    AwaitingVoice,
    BotTurn,
    Business,
    Conversation,
    Expire,
    GiveUp,
    Handle,
    Idle,
    MediaResult,
    PhoneApp,
    Receive,
    VoiceResult,
    answers,
    decide,
)
from services.conversation.interpret import describe
from services.conversation.outputs import mark_read, resend, resend_business
from services.conversation.responders import Profile, Responder
from services.conversation.states import Conversations, Step, Steps, load
from shared.bot import Bot, Contact, Outcome, expired, finish, respond
from shared.bot import load as load_bot
from shared.broker.bus import Context, Publish
from shared.directory import Directory, Number
from shared.events.business import contact_id_for
from shared.events.conversation import CustomerWrote, conversation_stream
from shared.events.dedup import MessageReceived, inbox_stream
from shared.eventstore import EventStore, Undecodable
from shared.schemas import (
    BusinessEcho,
    ChangeHandling,
    CustomerMessage,
    FlowTimeout,
    HandBack,
    MediaProcessed,
    Resume,
    SendBusinessMessage,
    VoiceFailed,
    VoicePrepared,
)

log = logging.getLogger("conversation")
# A number with no bot published still honours the opt-out keywords (STOP, UNSUBSCRIBE,
# START, ...: shared/bot's defaults, with their confirmations); a number's bot definition
# sets its own (`opt_out.stop`, `opt_out.start`: "ANNULLA", say).
KEYWORDS = load_bot("version: 1\nlanguage: en\nrules: []\n")


@dataclass
class Deps:
    store: EventStore
    responder: Responder
    # Media messages go to the media service (off: answered from their description alone).
    media_service: bool = False
    # A voice note is answered with a voice note (ElevenLabs is configured).
    voice_replies: bool = False
    # Each number's persona, model and voice (None: the environment's for every number).
    directory: Directory | None = None
    # The numbers' bots (None: the responder answers everything, as before bots).
    bots: Bots | None = None
    # Seconds the reply has to be ready in to carry the read mark (0: marked read first).
    read_grace: float = 0.0
    conversations: Conversations = field(init=False)

    def __post_init__(self) -> None:
        self.conversations = Conversations(self.store)


# --- inputs ---------------------------------------------------------------------------------


def on_customer_message(msg: CustomerMessage, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _customer_message(msg, ctx, deps, state)
    )


async def _customer_message(
    msg: CustomerMessage, ctx: Context, deps: Deps, state: Conversation
) -> Steps:
    if isinstance(state.phase, AwaitingMedia | AwaitingVoice) and msg.seq >= state.phase.seq:
        # It waits in the inbox: the awaited answer goes on with it, in order.
        yield _waiting(state, msg.seq, f"customer:{msg.seq}")
        return
    if msg.seq <= state.last_seq:
        yield resend(state, msg.seq)
        return
    pending = await _inbox(deps, state, until=msg.seq, first=msg)
    async for batch in _advance(deps, state, pending, ctx, f"customer:{msg.seq}"):
        yield batch


def on_media_processed(msg: MediaProcessed, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _media_processed(msg, ctx, deps, state)
    )


async def _media_processed(
    msg: MediaProcessed, ctx: Context, deps: Deps, state: Conversation
) -> Steps:
    if state.phase != AwaitingMedia(msg.seq):
        if msg.seq in state.media_requests and msg.seq <= state.last_seq:
            yield _since(state, msg.seq)  # handled already: a redelivery
        return
    request = state.media_requests[msg.seq]
    step = Step(deps.store, state, ctx)
    step.record(decide(state, MediaResult(msg)))
    # Read-marked when the file was requested; not again. A person who has the conversation
    # answers it themselves.
    if answers(state):
        speak = deps.voice_replies and request.voice
        await _answer(deps, step, msg.seq, request.wamid, request.received_at, speak)
    yield await step.commit()
    async for batch in _go_on(deps, state, ctx, f"media:{msg.seq}"):
        yield batch


def on_voice(msg: VoicePrepared | VoiceFailed, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(msg.conversation_id, lambda state: _voice(msg, ctx, deps, state))


async def _voice(
    msg: VoicePrepared | VoiceFailed, ctx: Context, deps: Deps, state: Conversation
) -> Steps:
    if state.phase != AwaitingVoice(msg.seq):
        if msg.seq in state.spoken:
            yield _since(state, msg.seq)  # handled already: a redelivery
        return
    result = (
        VoiceResult(msg.seq, msg.command_id, media_id=msg.media_id)
        if isinstance(msg, VoicePrepared)
        else VoiceResult(msg.seq, msg.command_id, reason=msg.reason)
    )
    step = Step(deps.store, state, ctx)
    step.record(decide(state, result))
    yield await step.commit()
    async for batch in _go_on(deps, state, ctx, f"voice:{msg.seq}"):
        yield batch


def on_business_message(msg: SendBusinessMessage, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _business_message(msg, ctx, deps, state)
    )


async def _business_message(
    msg: SendBusinessMessage, ctx: Context, deps: Deps, state: Conversation
) -> Steps:
    """In the customer's order: after the replies decided before it (held behind a voice
    reply in preparation), before the ones decided after."""
    if msg.message_id in state.business:
        yield resend_business(state, msg.message_id)  # a redelivery
        return
    step = Step(deps.store, state, ctx)
    step.record(decide(state, Business(msg, msg.text or describe(msg.message_type, msg.payload))))
    yield await step.commit()


def on_business_echo(msg: BusinessEcho, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _business_echo(msg, ctx, deps, state)
    )


async def _business_echo(msg: BusinessEcho, ctx: Context, deps: Deps, state: Conversation) -> Steps:
    step = Step(deps.store, state, ctx)
    step.record(decide(state, PhoneApp(msg.event)))
    yield await step.commit()


def on_hand_back(msg: HandBack, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _hand_back(msg, ctx, deps, state)
    )


async def _hand_back(msg: HandBack, ctx: Context, deps: Deps, state: Conversation) -> Steps:
    """The idle timer fired: back to the bot unless someone wrote after the activity it
    counted from (it follows the stream from behind)."""
    later = await deps.store.read_stream(
        conversation_stream(state.conversation_id), msg.active_version + 1
    )
    active = any(isinstance(e.event, ACTIVITY) for e in later)
    step = Step(deps.store, state, ctx)
    step.record(decide(state, Idle(msg.active_version, active)))
    yield await step.commit()


def on_change_handling(msg: ChangeHandling, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _change_handling(msg, ctx, deps, state)
    )


async def _change_handling(
    msg: ChangeHandling, ctx: Context, deps: Deps, state: Conversation
) -> Steps:
    step = Step(deps.store, state, ctx)
    step.record(
        decide(state, Handle(msg.request_id, msg.action, msg.assignee, msg.actor, msg.reason))
    )
    yield await step.commit()


def on_resume(msg: Resume, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _go_on(deps, state, ctx, "resume")
    )


# --- giving up (dead letters) ---------------------------------------------------------------


async def give_up_message(msg: CustomerMessage, ctx: Context, error: str, deps: Deps) -> None:
    """The message is going to the dead letters: record its turn as failed, so that the
    conversation moves on to the customer's next message instead of blocking on this one."""
    state = await _fresh(deps, msg.conversation_id)
    if msg.seq > state.last_seq and state.phase == READY:
        step = Step(deps.store, state, ctx)
        step.record(decide(state, GiveUp(state.last_seq + 1, error)))
        await step.commit()


async def give_up_answer(
    msg: MediaProcessed | VoicePrepared | VoiceFailed, ctx: Context, error: str, deps: Deps
) -> list[Publish]:
    """An answer from the media service could not be handled: what waited for it is given
    up (a voice reply goes as text), and the messages that waited behind it go on."""
    state = await _fresh(deps, msg.conversation_id)
    if not state.awaits(msg.seq):
        return []
    step = Step(deps.store, state, ctx)
    step.record(decide(state, GiveUp(msg.seq, error)))
    published = await step.commit()
    return [
        *published,
        Publish("conversation", msg.conversation_id, Resume(conversation_id=msg.conversation_id)),
    ]


async def _fresh(deps: Deps, conversation_id: str) -> Conversation:
    deps.conversations.forget(conversation_id)
    return await load(deps.store, conversation_id)


# --- the steps ------------------------------------------------------------------------------


async def _advance(
    deps: Deps,
    state: Conversation,
    pending: list[tuple[int, MessageReceived | Undecodable]],
    ctx: Context,
    trigger: str,
) -> Steps:
    """Handle inbox messages in order, one committed step each, stopping when the
    conversation starts waiting (a media file, a voice reply): its answer goes on."""
    for seq, received in pending:
        step = Step(deps.store, state, ctx)
        if isinstance(received, Undecodable):
            # A recorded message that cannot be read back (a bug, a hand-edited row): give
            # it up rather than stop the customer's later messages behind it.
            step.record(decide(state, GiveUp(seq, f"unreadable inbox event: {received.error}")))
            yield await step.commit()
            continue
        recorded = step.record(decide(state, Receive(seq, received, trigger, deps.media_service)))
        if any(isinstance(e, CustomerWrote) for e in recorded) and answers(state):
            answering = _answer(deps, step, seq, received.wamid, received.received_at, speak=False)
            if deps.read_grace <= 0:
                yield [mark_read(state, received.wamid)]
                await answering
            else:
                # A reply ready within the grace carries the read mark (one command, not
                # two); a slower one has the customer see the blue ticks and "typing...".
                task = asyncio.ensure_future(answering)
                try:
                    done, _ = await asyncio.wait({task}, timeout=deps.read_grace)
                    if not done:
                        yield [mark_read(state, received.wamid)]
                    await task
                finally:
                    task.cancel()  # a no-op once it is done; else the handler was cancelled
                if done:
                    step.read = received.wamid
        yield await step.commit()
        log.info(
            "turn handled",
            extra={
                "fields": {
                    "conversation": state.conversation_id,
                    "seq": seq,
                    "answered": seq in state.replies,
                }
            },
        )
        if state.phase != READY:
            return


async def _answer(
    deps: Deps, step: Step, seq: int, in_reply_to: str, received_at: float, speak: bool
) -> None:
    """The bot's answer (its rules, flows and the LLM among them) when the number has one;
    else the responder's (the LLM, as before any bot was published)."""
    state = step.state
    number, bot = await _bot_of(deps, state)
    profile = Profile(number.business_id, number.persona, number.llm_model) if number else Profile()
    wrote = next((e for e in reversed(step.events) if isinstance(e, CustomerWrote)), None)
    if bot is None and wrote is not None:
        # No bot published: the built-in STOP / START keywords still opt the customer out
        # (and back in) with their confirmation, and the LLM does not also answer.
        keyword = respond(KEYWORDS, state.bot, bot_turn(wrote), _contact(state), time.time())
        if keyword.handled_by in ("opt_out", "opt_in"):
            step.record(
                decide(state, _bot_turn_of(keyword, seq, in_reply_to, received_at, state, number))
            )
            return
    if bot is None or wrote is None:
        reply = await deps.responder.reply(state, profile)
        answer = Answer(seq, reply.text, reply.responder, in_reply_to, speak, received_at)
        step.record(decide(state, answer))
        return
    outcome = respond(bot, state.bot, bot_turn(wrote), _contact(state), time.time())
    if outcome.llm is not None:
        outcome = finish(outcome, await deps.responder.complete(outcome.llm, state, profile))
    step.record(
        decide(state, _bot_turn_of(outcome, seq, in_reply_to, received_at, state, number, speak))
    )


def _bot_turn_of(
    outcome: Outcome,
    seq: int,
    in_reply_to: str,
    received_at: float,
    state: Conversation,
    number: Number | None,
    speak: bool = False,
) -> BotTurn:
    business = number.business_id if number else ""
    contact = contact_id_for(business, state.customer) if business else ""
    return BotTurn(seq, outcome, in_reply_to, speak, received_at, business, contact)


async def _bot_of(deps: Deps, state: Conversation) -> tuple[Number | None, Bot | None]:
    """The number (from the directory) and the bot that answers it: the version the
    customer's flow started with while it lasts, else the current one (None: the LLM)."""
    number = await deps.directory.number(state.phone_number_id) if deps.directory else None
    if deps.bots is None:
        return number, None
    started = state.bot.revision if state.bot.flow else 0
    bot = await deps.bots.bot(state.phone_number_id, number.bot_version if number else 0, started)
    return number, bot


def _contact(state: Conversation) -> Contact:
    return Contact(
        name=state.customer_name,
        attributes=state.attributes,
        tags=tuple(sorted(state.tags)),
        opted_out=state.opted_out,
    )


# --- flow time-outs (the timer, timers.py) ---------------------------------------------------


def on_flow_timeout(msg: FlowTimeout, ctx: Context, deps: Deps) -> Steps:
    return deps.conversations.run(
        msg.conversation_id, lambda state: _flow_timeout(msg, ctx, deps, state)
    )


async def _flow_timeout(msg: FlowTimeout, ctx: Context, deps: Deps, state: Conversation) -> Steps:
    """The flow ends with its `timeout_message` if the customer is still at the step whose
    deadline this is. A message being handled (a file, a voice reply) goes first: it answers
    the step, and judges the time-out itself."""
    if state.bot.deadline != msg.deadline or not state.bot.flow or state.phase != READY:
        return
    _, bot = await _bot_of(deps, state)
    outcome = None
    if bot is not None:
        outcome = expired(bot, state.bot, _contact(state), time.time())
        if outcome is None:
            return  # early (another instance's clock): the timer fires it again
    step = Step(deps.store, state, ctx)
    step.record(decide(state, Expire(msg.deadline, outcome)))
    yield await step.commit()


async def _go_on(deps: Deps, state: Conversation, ctx: Context, trigger: str) -> Steps:
    """The customer messages that waited in the inbox, now that nothing is awaited."""
    if state.phase != READY:
        return
    pending = await _inbox(deps, state)
    async for batch in _advance(deps, state, pending, ctx, trigger):
        yield batch


async def _inbox(
    deps: Deps, state: Conversation, until: int | None = None, first: CustomerMessage | None = None
) -> list[tuple[int, MessageReceived | Undecodable]]:
    """The inbox messages after the last one handled (up to `until`). The usual case, the
    very next one, needs no read: the broker message carries it."""
    if first is not None and first.seq == state.last_seq + 1:
        return [(first.seq, first.event)]
    inbox = await deps.store.read_stream(inbox_stream(state.conversation_id), state.last_seq + 1)
    return [
        (e.version, e.event)
        for e in inbox
        if isinstance(e.event, MessageReceived | Undecodable)
        and (until is None or e.version <= until)
    ]


def _waiting(state: Conversation, seq: int, trigger: str) -> list[Publish]:
    """A message that waits behind what is awaited. Its own redelivery publishes the
    awaited request again if its handling made it (a crash may have lost that publish)."""
    assert isinstance(state.phase, AwaitingMedia | AwaitingVoice)
    awaited = state.phase.seq
    if seq == awaited:
        return resend(state, seq)
    request = state.media_requests.get(awaited)
    if isinstance(state.phase, AwaitingMedia) and request and request.trigger == trigger:
        return resend(state, awaited)
    return []


def _since(state: Conversation, seq: int) -> list[Publish]:
    """Everything handling an answer for `seq` published: its reply and the later ones."""
    return [p for s in range(seq, state.last_seq + 1) for p in resend(state, s)]
