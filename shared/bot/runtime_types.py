"""What the conversation passes in and gets back: the customer's message (`Turn`), who
they are (`Contact`), the bot's memory of them (`BotState`), and the `Outcome` of a turn:
the replies, the new state, the actions and, optionally, a request for the LLM.

Every type is a msgspec Struct, so the state (and an outcome waiting for the LLM) can be
recorded in an event: `msgspec.json.encode(state)`, `msgspec.json.decode(raw, type=BotState)`.
Times are Unix seconds."""

from __future__ import annotations

from typing import Any

import msgspec


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's message as the bot sees it.

    `text`: the text, an image's or video's caption, a voice note's transcript, a button's
    title; "" when there is none (a sticker, a location). `kind`: text, image, video,
    document, sticker, audio, voice, location, contacts, order, button (a reply button or
    a template's quick reply), list (a list reply), form, welcome (the customer opened the
    chat). `button_id`: the id of the button or list row chosen. `timestamp`: Meta's.
    """

    text: str = ""
    kind: str = "text"
    button_id: str = ""
    timestamp: float = 0.0


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    attributes: dict[str, str] = {}
    tags: tuple[str, ...] = ()
    opted_out: bool = False


class BotState(msgspec.Struct, kw_only=True):
    """The bot's memory of one customer. An empty `flow` means not in a flow."""

    flow: str = ""
    step: str = ""
    slots: dict[str, str] = {}
    retries: int = 0  # wrong answers to the current step so far
    started_at: float = 0.0  # when the flow started (`now`)
    answered_at: float = 0.0  # when the customer last answered in it (`now`)
    deadline: float = 0.0  # when the flow times out (0: never); for the runtime's timer
    revision: int = 0  # the definition's revision the flow started with
    away_at: float | None = None  # Meta's timestamp of the message that got the last away message


# --- actions for the runtime to carry out ---------------------------------------------------


class Tag(msgspec.Struct, frozen=True, tag="tag"):
    name: str


class Untag(msgspec.Struct, frozen=True, tag="untag"):
    name: str


class SetAttribute(msgspec.Struct, frozen=True, tag="attribute"):
    name: str
    value: str


class OptOut(msgspec.Struct, frozen=True, tag="opt_out"):
    pass


class OptIn(msgspec.Struct, frozen=True, tag="opt_in"):
    pass


class Emit(msgspec.Struct, frozen=True, tag="emit"):
    """Record a `flow.completed` event named `name` with the flow's slots, for CRMs."""

    name: str
    flow: str = ""
    slots: dict[str, str] = {}


class Handoff(msgspec.Struct, frozen=True, tag="handoff"):
    """The conversation becomes `waiting`: the bot is silent until a person releases it.
    `reason`: `rule:<id>`, `flow:<flow>.<step>` (retries ran out), `action:<flow>` or
    `llm` (the LLM handed off)."""

    reason: str


Action = Tag | Untag | SetAttribute | OptOut | OptIn | Emit | Handoff


class LLMRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to ask the LLM. `messages` are chat messages (`role`, `content`); `history`:
    how many of the conversation's last turns to put after the system message (the
    fallback answers the conversation; a flow's prompt does not need it). `fallback` is
    what `finish` says when the LLM fails or times out ("" for nothing)."""

    messages: list[dict[str, str]]
    history: int = 0
    max_tokens: int = 300
    timeout: float = 15.0
    fallback: str = ""
    handoff_marker: str = "[HANDOFF]"
    handoff_reply: str = ""


class Outcome(msgspec.Struct, kw_only=True):
    """A turn's result. `replies` are Cloud API message bodies (`{"type": "text", "text":
    {...}}`, interactive, template), to send in order. With `llm`, the turn is not finished:
    ask the LLM, then `finish(outcome, answer or None)` puts its answer (or the fallback)
    between `replies` and `after`. `handled_by` says what answered: `rule:<id>`,
    `flow:<flow>.<step>`, `fallback`, `away`, `opt_out`, `opt_in`, `timeout`, or ""."""

    replies: list[dict[str, Any]]
    state: BotState
    actions: list[Action] = []
    llm: LLMRequest | None = None
    after: list[dict[str, Any]] = []
    handled_by: str = ""
    language: str = ""
