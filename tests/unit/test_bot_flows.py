"""Flows: asking, validating, retries and on_fail, max_length, answers with no text,
branches, say steps, time-outs (at the next message and on the timer), interrupts, the
opt-out keywords, the end with its actions, a definition republished mid-flow."""

from __future__ import annotations

import textwrap
from typing import Any

import msgspec
import pytest

from shared.bot import (
    BotState,
    Contact,
    Emit,
    Handoff,
    OptOut,
    Outcome,
    SetAttribute,
    Tag,
    Turn,
    expired,
    load,
    respond,
)
from shared.bot.loader import Bot

NOW = 1_800_000_000.0

SUPPORT = """
rules:
  - id: support
    match: {any: [help], button: support}
    reply: "Let's open a request."
    flow: support
  - id: human
    match: {any: [agent]}
    reply: "Passing you to a colleague."
    handoff: true
    interrupt: true
  - id: hours
    match: {any: [hours]}
    reply: "We're open 9-18."
    interrupt: true
  - id: cancel
    match: {regex: "^cancel$"}
    reply: "Cancelled."
    interrupt: true
    end_flow: true
  - id: greeting
    match: {any: [hello]}
    reply: "Hello!"
fallback: {text: "Sorry?"}
flows:
  support:
    timeout: 30m
    timeout_message: "I closed your request, {{slots.name}}."
    steps:
      - id: name
        ask: "Your name?"
        save: name
        max_length: 20
      - id: order
        ask: "Your order number (like A-123)?"
        validate: {regex: "^[A-Z]-\\\\d+$"}
        retry: "Write it like A-123."
        max_retries: 2
        save: order
      - id: problem
        ask: "What went wrong?"
        save: problem
    done:
      reply: "Thanks {{slots.name}}, ticket for {{slots.order}}: {{slots.problem}}."
      actions:
        - tag: support
        - attribute: {last_order: "{{slots.order}}"}
        - emit: support_request
"""


def make(text: str = SUPPORT, revision: int = 0) -> Bot:
    return load(textwrap.dedent(text), revision)


class Chat:
    """A customer talking to a bot, `now` advancing a second per message."""

    def __init__(self, bot: Bot, contact: Contact | None = None) -> None:
        self.bot, self.state, self.now = bot, BotState(), NOW
        self.contact = contact or Contact()
        self.last: Outcome | None = None

    def send(self, text: str = "", *, wait: float = 1.0, **turn: str) -> list[str]:
        self.now += wait
        self.last = respond(
            self.bot,
            self.state,
            Turn(text=text, timestamp=self.now, **turn),
            self.contact,
            self.now,
        )
        self.state = self.last.state
        return [_said(r) for r in self.last.replies]


def _said(reply: dict[str, Any]) -> str:
    if reply["type"] == "text":
        return str(reply["text"]["body"])
    interactive = reply["interactive"]
    return f"[{interactive['type']}] {interactive['body']['text']}"


def test_a_flow_collects_its_slots_and_ends_with_its_reply_and_actions() -> None:
    chat = Chat(make())
    assert chat.send("help") == ["Let's open a request.", "Your name?"]
    assert chat.state.flow == "support" and chat.state.step == "name"
    assert chat.state.started_at == chat.now
    assert chat.send("Ann") == ["Your order number (like A-123)?"]
    assert chat.state.slots == {"name": "Ann"}
    assert chat.send("a-12") == ["What went wrong?"]
    assert chat.send("It arrived broken") == ["Thanks Ann, ticket for a-12: It arrived broken."]
    assert chat.state == BotState()
    assert chat.last is not None
    assert chat.last.actions == [
        Tag("support"),
        SetAttribute("last_order", "a-12"),
        Emit(
            "support_request",
            "support",
            {"name": "Ann", "order": "a-12", "problem": "It arrived broken"},
        ),
    ]
    assert chat.last.handled_by == "flow:support.problem"


def test_a_wrong_answer_gets_the_retry_then_on_fail_hands_off() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann")
    assert chat.send("twelve") == ["Write it like A-123."]
    assert chat.state.retries == 1
    assert chat.send("still no") == ["Write it like A-123."]
    assert chat.state.retries == 2
    assert chat.send("nope") == []
    assert chat.last is not None and chat.last.actions == [Handoff("flow:support.order")]
    assert chat.state.flow == ""


def test_on_fail_end_says_the_fail_message_and_ends_without_handoff() -> None:
    text = SUPPORT.replace(
        "max_retries: 2", "max_retries: 0\n        on_fail: end\n        fail_message: Never mind."
    )
    chat = Chat(make(text))
    chat.send("help")
    chat.send("Ann")
    assert chat.send("nope") == ["Never mind."]
    assert chat.last is not None and chat.last.actions == []
    assert chat.state.flow == ""


def test_a_retry_is_the_question_again_when_none_is_written() -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("x" * 21) == ["Your name?"]  # over max_length 20
    assert chat.send("x" * 20) == ["Your order number (like A-123)?"]


@pytest.mark.parametrize("kind", ["sticker", "location", "image", "voice"])
def test_an_answer_with_no_text_gets_the_retry(kind: str) -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("", kind=kind) == ["Your name?"]
    assert chat.state.step == "name" and chat.state.retries == 1


def test_a_caption_or_a_transcript_answers_like_text() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann", kind="voice")
    assert chat.send("A-77", kind="image") == ["What went wrong?"]
    assert chat.state.slots["order"] == "A-77"


def test_the_default_max_length_is_1000() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann")
    chat.send("A-1")
    assert chat.send("x" * 1001) == ["What went wrong?"]
    assert chat.send("x" * 1000)[0].startswith("Thanks Ann")


def test_in_a_flow_the_message_answers_the_step_not_the_rules() -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("hello") == ["Your order number (like A-123)?"]
    assert chat.state.slots["name"] == "hello"


def test_an_interrupting_rule_answers_then_the_question_is_asked_again() -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("hours?") == ["We're open 9-18.", "Your name?"]
    assert chat.state.flow == "support" and chat.state.step == "name"
    assert chat.last is not None and chat.last.handled_by == "rule:hours"


def test_an_interrupting_handoff_ends_the_flow() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann")
    assert chat.send("I want an agent") == ["Passing you to a colleague."]
    assert chat.last is not None and chat.last.actions == [Handoff("rule:human")]
    assert chat.state.flow == ""


def test_an_interrupting_rule_can_end_the_flow() -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("cancel") == ["Cancelled."]
    assert chat.state.flow == ""
    assert chat.send("hello") == ["Hello!"]


def test_stop_opts_out_in_the_middle_of_a_flow_and_keeps_the_flow() -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("Stop!")[0].startswith("You're unsubscribed")
    assert chat.last is not None and chat.last.actions == [OptOut()]
    assert chat.state.step == "name"
    assert chat.send("Ann") == ["Your order number (like A-123)?"]


def test_a_flow_times_out_at_the_next_message() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann")
    assert chat.state.deadline == chat.now + 1800
    assert chat.send("hello", wait=1801) == ["I closed your request, Ann.", "Hello!"]
    assert chat.state.flow == ""
    assert chat.last is not None and chat.last.handled_by == "rule:greeting"


def test_a_flow_within_its_timeout_goes_on() -> None:
    chat = Chat(make())
    chat.send("help")
    assert chat.send("Ann", wait=1799) == ["Your order number (like A-123)?"]


def test_expired_is_for_the_runtimes_timer() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann")
    assert expired(chat.bot, chat.state, chat.contact, chat.state.deadline - 1) is None
    ended = expired(chat.bot, chat.state, chat.contact, chat.state.deadline)
    assert ended is not None
    assert ended.replies == [{"type": "text", "text": {"body": "I closed your request, Ann."}}]
    assert ended.state.flow == "" and ended.handled_by == "timeout"
    assert expired(chat.bot, ended.state, chat.contact, chat.now + 10_000) is None
    assert expired(chat.bot, BotState(), chat.contact, chat.now) is None


def test_a_flow_with_no_timeout_never_expires() -> None:
    chat = Chat(
        make(
            SUPPORT.replace(
                '    timeout: 30m\n    timeout_message: "I closed your request, {{slots.name}}."\n',
                "",
            )
        )
    )
    chat.send("help")
    assert chat.state.deadline == 0.0
    assert chat.send("Ann", wait=86400 * 30) == ["Your order number (like A-123)?"]


BRANCHES = """
rules:
  - id: start
    match: {any: [start]}
    flow: order
flows:
  order:
    steps:
      - id: kind
        ask:
          buttons:
            body: "Pickup or delivery?"
            options: [{id: pickup, title: Pickup}, {id: delivery, title: Delivery}]
        validate: choice
        save: kind
        branch:
          - {value: pickup, goto: when}
      - id: address
        ask: "Your address?"
        save: address
        next: when
      - id: when
        ask: "Which day? (like 25/12/2026)"
        validate: date
        save: day
      - id: count
        ask: "How many?"
        validate: {number: {min: 1, max: 10, integer: true}}
        save: count
      - id: email
        ask: "Your email?"
        validate: email
        save: email
      - id: more
        ask: "Anything else?"
        branch:
          - {match: {any: [no, nothing, "no thanks"]}, goto: done}
          - {match: {kind: image}, goto: end}
        next: more_text
      - id: more_text
        say: "Noted."
        next: done
    done:
      reply: "{{slots.kind}} {{slots.address}} {{slots.day}} {{slots.count}} {{slots.email}}"
"""


def test_a_choice_by_button_branches() -> None:
    chat = Chat(make(BRANCHES))
    chat.send("start")
    assert chat.send("Pickup", button_id="pickup", kind="button") == [
        "Which day? (like 25/12/2026)"
    ]
    assert chat.state.slots == {"kind": "pickup"}


@pytest.mark.parametrize("typed", ["delivery", "DELIVERY!", "Delivery", "2"])
def test_a_choice_typed_by_id_title_or_number(typed: str) -> None:
    chat = Chat(make(BRANCHES))
    chat.send("start")
    assert chat.send(typed) == ["Your address?"]
    assert chat.state.slots == {"kind": "delivery"}


def test_a_choice_not_among_the_options_is_retried() -> None:
    chat = Chat(make(BRANCHES))
    assert chat.send("start") == ["[button] Pickup or delivery?"]
    assert chat.send("by drone") == ["[button] Pickup or delivery?"]  # the question again
    assert chat.state.retries == 1


def test_validations_normalise_what_they_save() -> None:
    chat = Chat(make(BRANCHES))
    chat.send("start")
    chat.send("delivery")
    assert chat.send("Via Roma 1") == ["Which day? (like 25/12/2026)"]
    assert chat.send("31/02/2026") == ["Which day? (like 25/12/2026)"]
    assert chat.send("5.3.27") == ["How many?"]
    assert chat.send("11") == ["How many?"]
    assert chat.send("2,5") == ["How many?"]
    assert chat.send(" 3 ") == ["Your email?"]
    assert chat.send("ann@") == ["Your email?"]
    assert chat.send("ann@example.com") == ["Anything else?"]
    assert chat.send("No thanks") == ["delivery Via Roma 1 2027-03-05 3 ann@example.com"]


def test_date_words_and_iso() -> None:
    chat = Chat(make(BRANCHES))
    chat.send("start")
    chat.send("pickup", button_id="pickup")
    chat.send("domani")
    assert chat.state.slots["day"] == "2027-01-16"  # NOW is 2027-01-15 (UTC)


def test_a_branch_by_kind_can_end_the_flow_and_the_default_goes_on() -> None:
    chat = Chat(make(BRANCHES))
    for said in ("start", "pickup", "2026-12-25", "1", "a@b.co"):
        chat.send(said)
    assert chat.send("photo", kind="image") == []
    assert chat.state.flow == ""
    chat = Chat(make(BRANCHES))
    for said in ("start", "pickup", "2026-12-25", "1", "a@b.co"):
        chat.send(said)
    assert chat.send("Ring twice") == ["Noted.", "pickup  2026-12-25 1 a@b.co"]


def test_the_state_is_serialisable() -> None:
    chat = Chat(make())
    chat.send("help")
    chat.send("Ann")
    raw = msgspec.json.encode(chat.state)
    assert msgspec.json.decode(raw, type=BotState) == chat.state
    assert chat.last is not None
    again = msgspec.json.decode(msgspec.json.encode(chat.last), type=Outcome)
    assert again == chat.last


def test_respond_does_not_change_the_state_it_is_given() -> None:
    chat = Chat(make())
    chat.send("help")
    before = msgspec.json.encode(chat.state)
    respond(chat.bot, chat.state, Turn(text="Ann"), chat.contact, NOW)
    assert msgspec.json.encode(chat.state) == before


def test_a_republished_definition_keeps_a_flow_whose_step_still_exists() -> None:
    chat = Chat(make(revision=1))
    chat.send("help")
    chat.bot = make(SUPPORT.replace("Your order number (like A-123)?", "Order number?"), revision=2)
    assert chat.send("Ann") == ["Order number?"]
    assert chat.state.revision == 1  # the revision the flow started in


def test_a_republished_definition_drops_a_flow_whose_step_is_gone() -> None:
    chat = Chat(make(revision=1))
    chat.send("help")
    chat.bot = make(SUPPORT.replace("id: name", "id: full_name"), revision=2)
    assert chat.send("hello") == ["Hello!"]
    assert chat.state.flow == ""


def test_a_flow_started_again_starts_from_the_beginning() -> None:
    bot = make(
        SUPPORT.replace(
            "  - id: hours\n",
            "  - id: again\n    match: {any: [restart]}\n    flow: support\n"
            "    interrupt: true\n  - id: hours\n",
        )
    )
    chat = Chat(bot)
    chat.send("help")
    chat.send("Ann")
    assert chat.send("restart") == ["Your name?"]
    assert chat.state.slots == {} and chat.state.step == "name"
