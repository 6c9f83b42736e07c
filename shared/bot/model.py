"""The typed form of a definition, as the parser builds it. Immutable once loaded.

Texts are kept per language (`Text.variants`, the key "" for text written once for every
language) and already split into literal parts and variables (`Template`), so a turn never
parses a template."""

from __future__ import annotations

from typing import Literal

import msgspec


class Var(msgspec.Struct, frozen=True):
    """`{{contact.attributes.city|Bologna}}`: path ("contact", "attributes", "city")."""

    path: tuple[str, ...]
    default: str = ""


class Template(msgspec.Struct, frozen=True):
    source: str
    parts: tuple[str | Var, ...]


class Text(msgspec.Struct, frozen=True):
    variants: dict[str, Template]  # language -> template; "" = the same in every language


# --- messages the bot sends -----------------------------------------------------------------


class Option(msgspec.Struct, frozen=True):
    id: str
    title: Text
    description: Text | None = None  # list rows only


class TextMessage(msgspec.Struct, frozen=True, tag="text"):
    text: Text


class ButtonsMessage(msgspec.Struct, frozen=True, tag="buttons"):
    body: Text
    options: tuple[Option, ...]
    header: Text | None = None
    footer: Text | None = None


class Section(msgspec.Struct, frozen=True):
    rows: tuple[Option, ...]
    title: Text | None = None


class ListMessage(msgspec.Struct, frozen=True, tag="list"):
    body: Text
    button: Text  # the label of the button that opens the list
    sections: tuple[Section, ...]
    header: Text | None = None
    footer: Text | None = None


class CtaUrlMessage(msgspec.Struct, frozen=True, tag="cta_url"):
    body: Text
    text: Text  # the button's label
    url: Template
    header: Text | None = None
    footer: Text | None = None


class TemplateMessage(msgspec.Struct, frozen=True, tag="template"):
    name: str
    language: str = ""  # "" = the customer's language
    parameters: tuple[Template, ...] = ()  # positional body parameters {{1}}, {{2}}
    named: dict[str, Template] = {}  # named body parameters {{first_name}}


Message = TextMessage | ButtonsMessage | ListMessage | CtaUrlMessage | TemplateMessage


# --- matching -------------------------------------------------------------------------------


class Match(msgspec.Struct, frozen=True):
    """Alternatives: any one of them matches. `phrases` are folded words, each with the
    language it was listed under ("" for a plain list)."""

    phrases: tuple[tuple[tuple[str, ...], str], ...] = ()
    regex: str = ""
    buttons: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


# --- actions --------------------------------------------------------------------------------


class TagAction(msgspec.Struct, frozen=True, tag="tag"):
    name: str


class UntagAction(msgspec.Struct, frozen=True, tag="untag"):
    name: str


class AttributeAction(msgspec.Struct, frozen=True, tag="attribute"):
    values: dict[str, Template]


class OptOutAction(msgspec.Struct, frozen=True, tag="opt_out"):
    pass


class OptInAction(msgspec.Struct, frozen=True, tag="opt_in"):
    pass


class HandoffAction(msgspec.Struct, frozen=True, tag="handoff"):
    pass


class EmitAction(msgspec.Struct, frozen=True, tag="emit"):
    name: str


class LLMCall(msgspec.Struct, frozen=True):
    """A prompt for the LLM; `fallback` is said when it is off, fails or times out."""

    prompt: Text | None = None  # None: the conversation itself (the fallback)
    fallback: Text | None = None
    max_tokens: int = 0  # 0: the definition's `llm.max_tokens`
    timeout: float = 0.0  # 0: the definition's `llm.timeout`


class LLMAction(msgspec.Struct, frozen=True, tag="llm"):
    call: LLMCall


Action = (
    TagAction
    | UntagAction
    | AttributeAction
    | OptOutAction
    | OptInAction
    | HandoffAction
    | EmitAction
    | LLMAction
)


# --- rules ----------------------------------------------------------------------------------


class Rule(msgspec.Struct, frozen=True):
    id: str
    match: Match
    reply: tuple[Message, ...] = ()
    flow: str = ""
    handoff: bool = False
    interrupt: bool = False
    end_flow: bool = False
    actions: tuple[Action, ...] = ()
    priority: int = 0
    languages: tuple[str, ...] = ()  # empty: every language


class Fallback(msgspec.Struct, frozen=True):
    llm: bool = False
    text: Text | None = None
    max_tokens: int = 0
    timeout: float = 0.0


# --- flows ----------------------------------------------------------------------------------


ValidatorKind = Literal["text", "number", "email", "date", "choice", "regex"]


class Validator(msgspec.Struct, frozen=True):
    kind: ValidatorKind = "text"
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    choices: tuple[Option, ...] = ()  # choice: ids with their titles
    regex: str = ""


class Branch(msgspec.Struct, frozen=True):
    goto: str
    match: Match | None = None  # on the message
    values: tuple[str, ...] = ()  # or on the validated answer (folded)


class AskStep(msgspec.Struct, frozen=True, tag="ask"):
    id: str
    ask: tuple[Message, ...]
    save: str = ""
    validate: Validator = Validator()
    retry: tuple[Message, ...] = ()  # empty: ask again
    max_retries: int = 3
    on_fail: Literal["handoff", "end"] = "handoff"
    fail_message: tuple[Message, ...] = ()
    max_length: int = 1000
    branch: tuple[Branch, ...] = ()
    next: str = ""  # "": the following step (after the last: done)


class SayStep(msgspec.Struct, frozen=True, tag="say"):
    id: str
    say: tuple[Message, ...]
    next: str = ""


class LLMStep(msgspec.Struct, frozen=True, tag="llm"):
    id: str
    call: LLMCall
    next: str = ""


Step = AskStep | SayStep | LLMStep

DONE = "done"  # goto targets that are not steps
END = "end"


class Done(msgspec.Struct, frozen=True):
    reply: tuple[Message, ...] = ()
    actions: tuple[Action, ...] = ()


class Flow(msgspec.Struct, frozen=True):
    id: str
    steps: tuple[Step, ...]
    timeout: float | None = None
    timeout_message: tuple[Message, ...] = ()
    done: Done = Done()

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def after(self, step: Step) -> str:
        """Where a step goes when nothing else says: its `next`, else the following step."""
        if step.next:
            return step.next
        index = self.steps.index(step)
        return self.steps[index + 1].id if index + 1 < len(self.steps) else DONE


# --- the rest -------------------------------------------------------------------------------


class BusinessHours(msgspec.Struct, frozen=True):
    timezone: str
    weekly: tuple[tuple[tuple[int, int], ...], ...]  # mon..sun: (start, end) minutes
    holidays: frozenset[str] = frozenset()  # ISO days
    away_message: tuple[Message, ...] = ()
    away_every: float = 12 * 3600.0
    outside_hours: tuple[str, ...] = ()  # rule ids (and "fallback") that run when closed
    outside_all: bool = False  # `outside_hours: all`


class OptOutKeywords(msgspec.Struct, frozen=True):
    stop: tuple[tuple[str, ...], ...]  # folded keywords
    start: tuple[tuple[str, ...], ...]
    stop_reply: tuple[Message, ...] = ()
    start_reply: tuple[Message, ...] = ()


class LLMSettings(msgspec.Struct, frozen=True):
    max_tokens: int = 300
    timeout: float = 15.0
    history: int = 10
    handoff_marker: str = "[HANDOFF]"
    handoff_reply: tuple[Message, ...] = ()


class Definition(msgspec.Struct, frozen=True):
    version: int
    language: str
    rules: tuple[Rule, ...]
    flows: dict[str, Flow]
    opt_out: OptOutKeywords
    llm: LLMSettings = LLMSettings()
    persona: str = ""
    business_hours: BusinessHours | None = None
    fallback: Fallback | None = None
