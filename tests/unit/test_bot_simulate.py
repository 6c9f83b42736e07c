"""The simulator: the same code as the runtime, no I/O, a placeholder for the LLM."""

from __future__ import annotations

import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from shared.bot import (
    SIMULATED_LLM_ANSWER,
    BotState,
    Contact,
    Handoff,
    SimulationError,
    load,
    simulate,
)
from shared.bot.loader import Bot

AT = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Europe/Rome"))  # a Monday

BOT = """
language: en
business_hours:
  timezone: Europe/Rome
  weekly: {mon: ["09:00-18:00"]}
  away_message: "Closed."
rules:
  - id: human
    match: {any: [agent]}
    reply: "Passing you on."
    handoff: true
  - id: italian
    match: {any: [italiano]}
    actions: [{attribute: {language: it}}, {tag: italian}]
    reply: {en: "English", it: "Italiano"}
  - id: ask
    match: {any: [start]}
    flow: ask
fallback: {llm: true, text: "Sorry?"}
flows:
  ask:
    timeout: 10m
    timeout_message: "Timed out."
    steps:
      - {id: name, ask: "Name?", save: name}
    done:
      reply: "Hi {{slots.name}}."
"""


def make() -> Bot:
    return load(textwrap.dedent(BOT))


def texts(replies: list[list[dict]]) -> list[list[str]]:  # type: ignore[type-arg]
    return [[r["text"]["body"] for r in message] for message in replies]


def test_replies_per_message_and_the_final_state() -> None:
    run = simulate(make(), [{"text": "start"}, {"text": "Ann"}, {"text": "start"}], None, AT)
    assert texts(run.replies) == [["Name?"], ["Hi Ann."], ["Name?"]]
    assert run.handled_by == ["rule:ask", "flow:ask.name", "rule:ask"]
    assert run.state.flow == "ask" and run.state.step == "name"
    assert run.state.started_at == AT.timestamp() + 2


def test_the_llm_is_a_placeholder_or_a_failure() -> None:
    assert texts(simulate(make(), [{"text": "what?"}], None, AT).replies) == [
        [SIMULATED_LLM_ANSWER]
    ]
    failed = simulate(make(), [{"text": "what?"}], None, AT, llm_answer=None)
    assert texts(failed.replies) == [["Sorry?"]]


def test_the_contact_changes_as_the_runtime_would_change_it() -> None:
    run = simulate(
        make(),
        [{"text": "italiano"}, {"text": "italiano"}, {"text": "STOP"}],
        Contact(name="A"),
        AT,
    )
    assert texts(run.replies)[:2] == [["Italiano"], ["Italiano"]]
    assert run.contact == Contact(
        name="A", attributes={"language": "it"}, tags=("italian",), opted_out=True
    )
    assert texts(run.replies)[2][0].startswith("Fatto")  # the built-in reply, in Italian


def test_after_a_handoff_the_bot_is_silent() -> None:
    run = simulate(make(), [{"text": "agent"}, {"text": "hello?"}], None, AT)
    assert texts(run.replies) == [["Passing you on."], []]
    assert run.actions == [[Handoff("rule:human")], []]
    assert run.waiting and run.handled_by[1] == "waiting"


def test_after_moves_time_on_for_timeouts_and_hours() -> None:
    run = simulate(make(), [{"text": "start"}, {"text": "Ann", "after": "11m"}], None, AT)
    assert texts(run.replies) == [["Name?"], ["Timed out.", SIMULATED_LLM_ANSWER]]
    closed = simulate(make(), [{"text": "hi"}, {"text": "hi", "after": "9h"}], None, AT)
    assert texts(closed.replies) == [[SIMULATED_LLM_ANSWER], ["Closed."]]


def test_buttons_kinds_and_a_starting_state() -> None:
    state = BotState(flow="ask", step="name")
    run = simulate(
        make(),
        [{"kind": "sticker"}, {"button_id": "x", "text": "Bob"}],
        None,
        AT.timestamp(),
        state=state,
    )
    assert texts(run.replies) == [["Name?"], ["Hi Bob."]]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"txt": "hi"}, "unknown key 'txt'"),
        ({"text": "hi", "after": "later"}, "not a duration"),
        ({"text": 3}, "are text"),
    ],
)
def test_a_bad_message_is_refused(message: dict, error: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SimulationError, match=error):
        simulate(make(), [{"text": "hi"}, message], None, AT)
