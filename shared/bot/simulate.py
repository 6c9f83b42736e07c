"""The simulator: a definition's answers to a list of messages, from the very code the
conversation runs, with no I/O (what `POST .../bot/simulate` answers).

- Messages: `{"text": "..."}`, `{"button_id": "support"}` (with `text` as its title if
  wanted), `{"kind": "location"}`, ...; `after` (a duration such as `31m`, default `1s`)
  is the time since the previous message, to try time-outs and `away_every`.
- `at` is the time of the first message (Unix seconds, or an aware datetime): business
  hours are judged at it.
- The contact changes as the runtime would change it: attributes, tags, opt-out.
- A handoff makes the conversation `waiting`: later messages get no bot reply.
- The LLM is not called: a request is answered with `llm_answer`, by default the
  placeholder `SIMULATED_LLM_ANSWER`; `llm_answer=None` simulates its failure, so the
  fallback text is what the customer would read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from shared.bot.engine import respond
from shared.bot.llm import finish
from shared.bot.loader import Bot
from shared.bot.runtime_types import (
    Action,
    BotState,
    Contact,
    Handoff,
    OptIn,
    OptOut,
    SetAttribute,
    Tag,
    Turn,
    Untag,
)
from shared.bot.values import duration

SIMULATED_LLM_ANSWER = "[the LLM's answer]"


class Simulation(msgspec.Struct, kw_only=True):
    replies: list[list[dict[str, Any]]]  # per message, the bodies the bot would send
    state: BotState
    contact: Contact
    actions: list[list[Action]]
    handled_by: list[str]
    waiting: bool = False  # handed off: the bot is silent until released


class SimulationError(ValueError):
    pass


def simulate(
    bot: Bot,
    messages: Iterable[Mapping[str, Any]],
    contact: Contact | None,
    at: float | datetime,
    *,
    state: BotState | None = None,
    llm_answer: str | None = SIMULATED_LLM_ANSWER,
) -> Simulation:
    now = at.timestamp() if isinstance(at, datetime) else float(at)
    who = contact or Contact()
    current = state or BotState()
    out = Simulation(replies=[], state=current, contact=who, actions=[], handled_by=[])
    for i, message in enumerate(messages):
        turn, gap = _turn(message, i)
        now += gap if i else 0.0
        turn = msgspec.structs.replace(turn, timestamp=now)
        if out.waiting:
            out.replies.append([])
            out.actions.append([])
            out.handled_by.append("waiting")
            continue
        outcome = respond(bot, current, turn, who, now)
        if outcome.llm is not None:
            outcome = finish(outcome, llm_answer)
        current, who = outcome.state, _apply(who, outcome.actions)
        out.replies.append(outcome.replies)
        out.actions.append(list(outcome.actions))
        out.handled_by.append(outcome.handled_by)
        out.waiting = any(isinstance(a, Handoff) for a in outcome.actions)
    out.state, out.contact = current, who
    return out


def _turn(message: Mapping[str, Any], index: int) -> tuple[Turn, float]:
    known = {"text", "button_id", "kind", "after"}
    unknown = set(message) - known
    if unknown:
        raise SimulationError(f"messages[{index}]: unknown key {sorted(unknown)[0]!r}")
    gap = duration(message.get("after", "1s"))
    if gap is None:
        raise SimulationError(f"messages[{index}].after: not a duration (like 30s, 31m, 12h)")
    text = message.get("text", "")
    button = message.get("button_id", "")
    if not isinstance(text, str) or not isinstance(button, str):
        raise SimulationError(f"messages[{index}]: `text` and `button_id` are text")
    kind = message.get("kind") or ("button" if button else "text")
    return Turn(text=text, kind=str(kind), button_id=button), gap


def _apply(contact: Contact, actions: list[Action]) -> Contact:
    attributes, tags, opted_out = dict(contact.attributes), list(contact.tags), contact.opted_out
    for action in actions:
        if isinstance(action, SetAttribute):
            attributes[action.name] = action.value
        elif isinstance(action, Tag) and action.name not in tags:
            tags.append(action.name)
        elif isinstance(action, Untag) and action.name in tags:
            tags.remove(action.name)
        elif isinstance(action, OptOut):
            opted_out = True
        elif isinstance(action, OptIn):
            opted_out = False
    return Contact(name=contact.name, attributes=attributes, tags=tuple(tags), opted_out=opted_out)
