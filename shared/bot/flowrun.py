"""A customer in a flow: starting it, answering its current step, running on through
`say` and `llm` steps to the next question or the end. Pure."""

from __future__ import annotations

from datetime import UTC, date, datetime

from shared.bot import hours
from shared.bot.answers import accept, same_value
from shared.bot.context import Context
from shared.bot.model import DONE, END, AskStep, Flow, LLMAction, LLMStep, SayStep


def start(ctx: Context, name: str) -> None:
    flow = ctx.definition.flows[name]
    ctx.end_flow()
    ctx.slots = {}
    state = ctx.state
    state.flow, state.started_at, state.revision = name, ctx.now, ctx.bot.revision
    run(ctx, flow, flow.steps[0].id)


def run(ctx: Context, flow: Flow, at: str) -> None:
    """From step `at` to the next question (the flow then waits) or the end."""
    for _ in range(len(flow.steps) + 1):  # the checks refuse loops that never wait
        if at == DONE:
            _done(ctx, flow)
            return
        if at == END:
            ctx.end_flow()
            return
        step = flow.step(at)
        if isinstance(step, AskStep):
            ctx.say(step.ask)
            _wait(ctx, flow, step.id)
            return
        if isinstance(step, SayStep):
            ctx.say(step.say)
        elif isinstance(step, LLMStep):
            ctx.ask_llm(step.call, conversation=False)
        else:
            break
        at = flow.after(step)
    ctx.end_flow()


def _wait(ctx: Context, flow: Flow, step: str) -> None:
    state = ctx.state
    if state.step != step:
        state.retries = 0
    state.step, state.slots, state.answered_at = step, dict(ctx.slots), ctx.now
    state.deadline = ctx.now + flow.timeout if flow.timeout else 0.0


def answer(ctx: Context) -> None:
    """The message answers the current step."""
    state = ctx.state
    flow = ctx.definition.flows[state.flow]
    step = flow.step(state.step)
    assert isinstance(step, AskStep)
    ctx.handled_by = f"flow:{flow.id}.{step.id}"
    value = accept(step, ctx.turn, _today(ctx), ctx.bot.patterns.get((flow.id, step.id)))
    if value is None:
        state.retries += 1
        if state.retries > step.max_retries:
            ctx.say(step.fail_message)
            if step.on_fail == "handoff":
                ctx.handoff(f"flow:{flow.id}.{step.id}")
            else:
                ctx.end_flow()
            return
        ctx.say(step.retry or step.ask)
        _wait(ctx, flow, step.id)
        return
    if step.save:
        ctx.slots[step.save] = value
    state.retries = 0
    run(ctx, flow, _branch(ctx, flow, step, value) or flow.after(step))


def ask_again(ctx: Context) -> None:
    """An interrupting rule answered; the flow still waits for the current step."""
    flow = ctx.definition.flows[ctx.state.flow]
    step = flow.step(ctx.state.step)
    assert isinstance(step, AskStep)
    ctx.say(step.ask)
    _wait(ctx, flow, step.id)


def _branch(ctx: Context, flow: Flow, step: AskStep, value: str) -> str:
    for k, branch in enumerate(step.branch):
        if branch.values:
            if same_value(value, branch.values):
                return branch.goto
        elif ctx.bot.branches[(flow.id, step.id, k)].test(ctx.words, ctx.turn) is not None:
            return branch.goto
    return ""


def _done(ctx: Context, flow: Flow) -> None:
    """The flow's end: its actions first (so an attribute such as `language` counts for
    the reply), then its reply, then its LLM call's answer."""
    ctx.end_flow()
    ctx.act(flow.done.actions, f"action:{flow.id}", flow.id)
    ctx.say(flow.done.reply)
    for action in flow.done.actions:
        if isinstance(action, LLMAction):
            ctx.ask_llm(action.call, conversation=False)


def timed_out(ctx: Context) -> None:
    flow = ctx.definition.flows.get(ctx.state.flow)
    ctx.end_flow()
    if flow is not None:
        ctx.say(flow.timeout_message)
    ctx.handled_by = "timeout"


def _today(ctx: Context) -> date:
    """The customer's today, for answers like `tomorrow`: in the business's time zone."""
    spec = ctx.definition.business_hours
    if spec is not None:
        return hours.local(spec, ctx.at).date()
    return datetime.fromtimestamp(ctx.at, UTC).date()
