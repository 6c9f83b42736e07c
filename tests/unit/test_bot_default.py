"""The shipped default bot (deploy/bots/default.yaml): valid, in English and Italian,
answering at any time, with its support flow and a handoff that interrupts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.bot import Contact, Emit, Handoff, SetAttribute, Tag, load, problems, simulate

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "deploy/bots/default.yaml").read_text()
BOT = load(TEXT)
ROME = ZoneInfo("Europe/Rome")


def said(replies: list[dict]) -> list[str]:  # type: ignore[type-arg]
    out = []
    for reply in replies:
        if reply["type"] == "text":
            out.append(reply["text"]["body"])
        else:
            out.append(reply["interactive"]["body"]["text"])
    return out


def test_it_validates_and_uses_no_llm() -> None:
    assert problems(TEXT) == []
    assert BOT.definition.fallback is not None and not BOT.definition.fallback.llm


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 29, 3, 0, tzinfo=ROME),  # Sunday night
        datetime(2026, 11, 30, 10, 0, tzinfo=ROME),  # Monday morning
        datetime(2026, 12, 25, 23, 0, tzinfo=ROME),
    ],
)
def test_a_new_customers_first_message_is_answered_at_any_time(when: datetime) -> None:
    run = simulate(BOT, [{"text": "hello"}], Contact(name="Ann"), when)
    assert said(run.replies[0]) == ["Hi Ann! I'm the shop's virtual assistant. How can I help?"]
    buttons = run.replies[0][0]["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["hours", "support", "human"]


def test_an_italian_customer_is_answered_in_italian() -> None:
    run = simulate(
        BOT,
        [{"text": "Buongiorno"}, {"text": "orari?"}],
        None,
        datetime(2026, 11, 30, 10, 0, tzinfo=ROME),
    )
    assert said(run.replies[0])[0].startswith("Ciao a te! Sono l'assistente")
    assert said(run.replies[1]) == [
        "Siamo aperti dal lunedì al venerdì 09:00\u201313:00 e 15:00\u201319:00, "
        "sabato 09:00\u201313:00."
    ]
    assert run.actions[0] == [SetAttribute("language", "it")]


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("opening hours?", "We're open Monday to Friday"),
        ("what's your address", "You'll find us at"),
        ("do you ship abroad?", "We ship within 2 working days"),
        ("can I pay with paypal", "You can pay by card or PayPal"),
        ("I want a refund", "You can return an item within 14 days"),
        ("thank you!", "You're welcome!"),
        ("xyzzy", "Sorry, I didn't understand."),
    ],
)
def test_the_faq(text: str, start: str) -> None:
    run = simulate(BOT, [{"text": text}], None, datetime(2026, 11, 30, 10, 0, tzinfo=ROME))
    assert said(run.replies[0])[0].startswith(start)


def test_the_support_flow_collects_name_order_and_problem() -> None:
    messages = [
        {"button_id": "support", "text": "Help with an order"},
        {"text": "Ann"},
        {"text": "my order"},
        {"text": "A-123"},
        {"text": "The box was empty"},
    ]
    run = simulate(BOT, messages, None, datetime(2026, 11, 30, 10, 0, tzinfo=ROME))
    assert [said(r) for r in run.replies] == [
        ["I'll open a support request. What's your name?"],
        ["What's your order number? It's on your receipt, like A-123."],
        ["That doesn't look like an order number: write it like A-123."],
        ["Tell me what went wrong."],
        [
            "Thanks Ann! I've opened a request about order A-123: "
            "a colleague will answer you here soon."
        ],
    ]
    assert run.actions[-1] == [
        Tag("support"),
        SetAttribute("last_order", "A-123"),
        Emit(
            "support_request",
            "support",
            {"name": "Ann", "order": "A-123", "problem": "The box was empty"},
        ),
    ]


def test_asking_for_a_person_interrupts_the_flow_and_hands_off() -> None:
    run = simulate(
        BOT,
        [{"text": "aiuto"}, {"text": "voglio parlare con un operatore"}],
        None,
        datetime.now(ROME),
    )
    assert said(run.replies[1]) == [
        "Ti passo a un collega, che ti risponderà qui il prima possibile."
    ]
    assert run.actions[1] == [Handoff("rule:human")]
    assert run.state.flow == ""


def test_cancel_leaves_the_flow() -> None:
    run = simulate(
        BOT, [{"text": "help"}, {"text": "Cancel!"}, {"text": "hours"}], None, datetime.now(ROME)
    )
    assert said(run.replies[1]) == ["OK, cancelled. Write *menu* to see what I can do."]
    assert said(run.replies[2])[0].startswith("We're open")


def test_an_order_number_that_never_comes_hands_off() -> None:
    messages = [{"text": "help"}, {"text": "Ann"}, {"text": "?"}, {"text": "??"}, {"text": "???"}]
    run = simulate(BOT, messages, None, datetime.now(ROME))
    assert said(run.replies[-1]) == ["I'll pass you to a colleague, who will find your order."]
    assert run.actions[-1] == [Handoff("flow:support.order")]


@pytest.mark.parametrize(
    ("text", "starts"),
    [
        ("Hello! What are your opening hours?", "We're open Monday to Friday"),
        ("Ciao, quali sono gli orari?", "Siamo aperti dal lunedì"),
    ],
)
def test_a_greeting_with_a_question_is_answered_the_question(text: str, starts: str) -> None:
    """Issue 13's complaint: asked the hours with a hello, the old bot only said hello."""
    run = simulate(
        BOT, [{"text": text}], Contact(name="Demo"), datetime(2026, 11, 30, 10, 0, tzinfo=ROME)
    )
    assert said(run.replies[0])[0].startswith(starts), said(run.replies[0])
