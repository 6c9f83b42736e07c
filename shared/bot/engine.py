"""A turn of the bot: `respond` to a customer's message, `expired` for a flow's time-out on
the runtime's timer. Pure: the clock is passed in, the LLM is a request in the outcome.

The order a message is handled in:
1. a flow started under an older revision of the definition continues if its flow and
   current step still exist, else it is dropped; a flow past its time-out ends with its
   `timeout_message` (and the message is handled as if there were no flow);
2. the opt-out keywords (a message that is exactly STOP, START, ...), always;
3. in a flow: an `interrupt` rule that matches, else the message answers the step;
4. not in a flow: the first rule that matches, else the fallback;
5. when closed (judged at Meta's timestamp), rules not in `outside_hours` do not run
   (nor the fallback unless listed); a customer in a flow goes on with it; if nothing at
   all was said, the `away_message`, at most once per `away_every`.
"""

from __future__ import annotations

from shared.bot import flowrun, hours
from shared.bot.context import Context
from shared.bot.loader import Bot
from shared.bot.matching import Found
from shared.bot.model import AskStep, LLMCall
from shared.bot.runtime_types import BotState, Contact, OptIn, OptOut, Outcome, Turn


def respond(bot: Bot, state: BotState, turn: Turn, contact: Contact, now: float) -> Outcome:
    """The bot's answer to `turn`. `now` is the time of handling (flows' time-outs);
    business hours are judged at `turn.timestamp`."""
    ctx = Context(bot, state, turn, contact, now)
    _carry_over(ctx)
    if ctx.state.flow and ctx.state.deadline and now >= ctx.state.deadline:
        flowrun.timed_out(ctx)
    if _keywords(ctx):
        return ctx.outcome()
    spec = bot.definition.business_hours
    open_now = spec is None or hours.is_open(spec, ctx.at)
    allowed = None if open_now else bot.outside
    if ctx.state.flow:
        found = bot.index.first(
            ctx.words, turn, language=ctx.language, interrupt_only=True, allowed_ids=allowed
        )
        if found is not None:
            _rule(ctx, found)
            if ctx.state.flow and not (found.rule.flow or found.rule.handoff):
                flowrun.ask_again(ctx)
        else:
            flowrun.answer(ctx)
    else:
        found = bot.index.first(ctx.words, turn, language=ctx.language, allowed_ids=allowed)
        if found is not None:
            _rule(ctx, found)
        elif allowed is None or "fallback" in allowed:
            _fallback(ctx)
    if not open_now and not ctx.replies and ctx.llm is None:
        _away(ctx)
    return ctx.outcome()


def expired(bot: Bot, state: BotState, contact: Contact, now: float) -> Outcome | None:
    """For the runtime's timer at `state.deadline`: the flow's end with its
    `timeout_message`, or None when the customer is not in a flow past its time-out."""
    if not state.flow or not state.deadline or now < state.deadline:
        return None
    ctx = Context(bot, state, Turn(timestamp=now), contact, now)
    flowrun.timed_out(ctx)
    return ctx.outcome()


def _carry_over(ctx: Context) -> None:
    state = ctx.state
    if not state.flow or state.revision == ctx.bot.revision:
        return
    flow = ctx.definition.flows.get(state.flow)
    step = flow.step(state.step) if flow else None
    if not isinstance(step, AskStep):
        ctx.end_flow()


def _keywords(ctx: Context) -> bool:
    if ctx.words in ctx.bot.stop:
        ctx.actions.append(OptOut())
        ctx.say(ctx.definition.opt_out.stop_reply)
        ctx.handled_by = "opt_out"
        return True
    if ctx.words in ctx.bot.start and ctx.contact.opted_out:
        ctx.actions.append(OptIn())
        ctx.say(ctx.definition.opt_out.start_reply)
        ctx.handled_by = "opt_in"
        return True
    return False


def _rule(ctx: Context, found: Found) -> None:
    rule = found.rule
    ctx.match = found.groups
    ctx.handled_by = f"rule:{rule.id}"
    if found.language and "language" not in ctx.attributes:
        if found.language != ctx.definition.language:
            # A keyword listed under a language tells what the customer speaks.
            ctx.set_attribute("language", found.language)
    ctx.act(rule.actions, f"rule:{rule.id}")
    ctx.say(rule.reply)
    if rule.handoff:
        ctx.handoff(f"rule:{rule.id}")
    elif rule.flow:
        flowrun.start(ctx, rule.flow)
    elif rule.end_flow:
        ctx.end_flow()


def _fallback(ctx: Context) -> None:
    fallback = ctx.definition.fallback
    if fallback is None:
        return
    ctx.handled_by = "fallback"
    if fallback.llm:
        call = LLMCall(None, fallback.text, fallback.max_tokens, fallback.timeout)
        ctx.ask_llm(call, conversation=True)
    elif fallback.text is not None:
        said = ctx.text(fallback.text)
        if said:
            ctx.replies.append({"type": "text", "text": {"body": said}})


def _away(ctx: Context) -> None:
    spec = ctx.definition.business_hours
    if spec is None or not spec.away_message:
        return
    last = ctx.state.away_at
    if last is not None and ctx.at - last < spec.away_every:
        return
    ctx.say(spec.away_message)
    if ctx.replies:
        ctx.state.away_at = ctx.at
        ctx.handled_by = "away"
