"""One turn being worked out: what has been said so far, the actions, the state, and what
the variables mean right now. Pure; `Outcome` is what it becomes."""

from __future__ import annotations

from typing import Any

import msgspec

from shared.bot import hours
from shared.bot.llm import request
from shared.bot.loader import Bot
from shared.bot.model import (
    Action,
    AttributeAction,
    EmitAction,
    HandoffAction,
    LLMAction,
    LLMCall,
    Message,
    OptInAction,
    OptOutAction,
    TagAction,
    Text,
    UntagAction,
)
from shared.bot.render import body, say
from shared.bot.runtime_types import Action as Done
from shared.bot.runtime_types import (
    BotState,
    Contact,
    Emit,
    Handoff,
    LLMRequest,
    OptIn,
    OptOut,
    Outcome,
    SetAttribute,
    Tag,
    Turn,
    Untag,
)
from shared.bot.text import words


def language_of(attributes: dict[str, str], default: str) -> str:
    code = attributes.get("language", "").strip().lower().replace("_", "-")
    return code or default


class Context:
    def __init__(self, bot: Bot, state: BotState, turn: Turn, contact: Contact, now: float) -> None:
        self.bot = bot
        self.definition = bot.definition
        self.state = msgspec.structs.replace(state, slots=dict(state.slots))
        self.turn = turn
        self.contact = contact
        self.now = now
        self.at = turn.timestamp or now  # business hours are judged at Meta's timestamp
        self.words = words(turn.text)
        self.attributes = dict(contact.attributes)
        self.language = language_of(self.attributes, self.definition.language)
        self.slots: dict[str, str] = dict(state.slots)  # what `{{slots.X}}` sees
        self.match: dict[str, str] = {}
        self.replies: list[dict[str, Any]] = []
        self.after: list[dict[str, Any]] = []  # said after the LLM's answer
        self.actions: list[Done] = []
        self.llm: LLMRequest | None = None
        self.handled_by = ""

    # --- variables ------------------------------------------------------------------------

    def lookup(self, path: tuple[str, ...]) -> str:
        match path:
            case ("contact", "name"):
                return self.contact.name
            case ("contact", "attributes", name):
                return self.attributes.get(name, "")
            case ("slots", name):
                return self.slots.get(name, "")
            case ("match", name):
                return self.match.get(name, "")
            case ("business", "hours"):
                spec = self.definition.business_hours
                return hours.describe_week(spec, self.language) if spec else ""
            case ("business", "next_open"):
                spec = self.definition.business_hours
                return hours.describe_next_open(spec, self.at, self.language) if spec else ""
        return ""

    def text(self, text: Text | None) -> str:
        if text is None:
            return ""
        return say(text, self.language, self.definition.language, self.lookup).strip()

    # --- saying and doing -----------------------------------------------------------------

    def say(self, messages: tuple[Message, ...]) -> None:
        target = self.after if self.llm is not None else self.replies
        for message in messages:
            rendered = body(message, self.language, self.definition.language, self.lookup)
            if rendered is not None:
                target.append(rendered)

    def act(self, actions: tuple[Action, ...], reason: str, flow: str = "") -> None:
        """Carry out a rule's or a flow's actions, except the LLM call (see `ask_llm`)."""
        for action in actions:
            if isinstance(action, TagAction):
                self.actions.append(Tag(action.name))
            elif isinstance(action, UntagAction):
                self.actions.append(Untag(action.name))
            elif isinstance(action, AttributeAction):
                for name, template in action.values.items():
                    value = say(Text({"": template}), "", "", self.lookup).strip()
                    self.set_attribute(name, value)
            elif isinstance(action, OptOutAction):
                self.actions.append(OptOut())
            elif isinstance(action, OptInAction):
                self.actions.append(OptIn())
            elif isinstance(action, HandoffAction):
                self.handoff(reason)
            elif isinstance(action, EmitAction):
                self.actions.append(Emit(action.name, flow, dict(self.slots)))
            elif not isinstance(action, LLMAction):
                raise TypeError(f"not an action: {action!r}")

    def set_attribute(self, name: str, value: str) -> None:
        self.actions.append(SetAttribute(name, value))
        self.attributes[name] = value
        if name == "language":  # takes effect for the rest of the turn
            self.language = language_of(self.attributes, self.definition.language)

    def handoff(self, reason: str) -> None:
        if not any(isinstance(a, Handoff) for a in self.actions):
            self.actions.append(Handoff(reason))
        self.end_flow()

    def end_flow(self) -> None:
        away_at = self.state.away_at
        self.state = BotState(away_at=away_at)

    def ask_llm(self, call: LLMCall, *, conversation: bool) -> None:
        """Ask the LLM (one call per turn: a second would say its fallback)."""
        if self.llm is not None:
            fallback = self.text(call.fallback)
            if fallback:
                self.after.append({"type": "text", "text": {"body": fallback}})
            return
        self.llm = request(self, call, conversation=conversation)

    def outcome(self) -> Outcome:
        return Outcome(
            replies=self.replies,
            state=self.state,
            actions=self.actions,
            llm=self.llm,
            after=self.after,
            handled_by=self.handled_by,
            language=self.language,
        )
