"""The LLM as one responder among the rules: the request the runtime sends, and how its
answer (or its failure) finishes the turn. The package never calls the LLM.

A refusal: the system message asks the LLM to answer with the definition's
`llm.handoff_marker` (`[HANDOFF]` unless set) when it cannot help or the customer wants a
person. An answer containing the marker (any case) hands the conversation off: the rest of
the answer is said if there is any, else `llm.handoff_reply`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.bot.model import LLMCall
from shared.bot.render import text_body
from shared.bot.runtime_types import BotState, Handoff, LLMRequest, Outcome

if TYPE_CHECKING:
    from shared.bot.context import Context

NAMES = {
    "en": "English",
    "it": "Italian",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "pt": "Portuguese",
}


def request(ctx: Context, call: LLMCall, *, conversation: bool) -> LLMRequest:
    """The fallback (`conversation`) answers the conversation: the runtime adds its last
    `llm.history` turns after the system message. A prompt (a flow's `llm` step or action)
    is one user message: the prompt, then the flow's slots."""
    settings = ctx.definition.llm
    system = [ctx.definition.persona] if ctx.definition.persona else []
    if "language" in ctx.attributes:
        name = NAMES.get(ctx.language.split("-")[0], f"the language with code {ctx.language}")
        system.append(f"Answer in {name}.")
    system.append(
        "If you cannot help with this, or the customer asks for a person, answer with only "
        f"{settings.handoff_marker}."
    )
    messages = [{"role": "system", "content": "\n\n".join(system)}]
    history = settings.history if conversation else 0
    if call.prompt is not None:
        prompt = ctx.text(call.prompt)
        if ctx.slots:
            prompt += "\n\n" + "\n".join(f"{k}: {v}" for k, v in ctx.slots.items())
        messages.append({"role": "user", "content": prompt})
    elif history == 0:
        messages.append({"role": "user", "content": ctx.turn.text})
    replies = settings.handoff_reply
    handoff_reply = ""
    for message in replies:
        rendered = ctx.text(getattr(message, "text", None))
        if rendered:
            handoff_reply = rendered
            break
    return LLMRequest(
        messages=messages,
        history=history,
        max_tokens=call.max_tokens or settings.max_tokens,
        timeout=call.timeout or settings.timeout,
        fallback=ctx.text(call.fallback),
        handoff_marker=settings.handoff_marker,
        handoff_reply=handoff_reply,
    )


def finish(outcome: Outcome, answer: str | None) -> Outcome:
    """The turn with the LLM's answer in place: `answer` is its text, or None when it
    failed or timed out (then the request's fallback is said, if any)."""
    asked = outcome.llm
    if asked is None:
        return outcome
    text = (answer or "").strip()
    marker = asked.handoff_marker
    if text and marker and marker.lower() in text.lower():
        rest = _without(text, marker) or asked.handoff_reply
        actions = list(outcome.actions)
        if not any(isinstance(a, Handoff) for a in actions):
            actions.append(Handoff("llm"))
        return Outcome(
            replies=[*outcome.replies, *([text_body(rest)] if rest else [])],
            state=BotState(away_at=outcome.state.away_at),  # a handed-off customer is in no flow
            actions=actions,
            handled_by=outcome.handled_by,
            language=outcome.language,
        )
    said = text or asked.fallback
    return Outcome(
        replies=[*outcome.replies, *([text_body(said)] if said else []), *outcome.after],
        state=outcome.state,
        actions=list(outcome.actions),
        handled_by=outcome.handled_by,
        language=outcome.language,
    )


def _without(text: str, marker: str) -> str:
    lowered, wanted = text.lower(), marker.lower()
    out, at = [], 0
    while (found := lowered.find(wanted, at)) >= 0:
        out.append(text[at:found])
        at = found + len(marker)
    out.append(text[at:])
    joined = re.sub(r"[ \t]{2,}", " ", "".join(out))
    return re.sub(r"[ \t]+\n", "\n", joined).strip()
