"""The bot inside the conversation: the shipped default bot answering with its rules and
flows, buttons as Cloud API bodies, state kept in events (a restart resumes a flow), a
handoff rule silencing the bot, and the LLM asked through the responder."""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.conversation.bots import DEFAULT_BOT, Bots
from services.conversation.handlers import on_change_handling, on_flow_timeout
from services.conversation.states import load
from shared.bot import load as load_bot
from shared.schemas import ChangeHandling, FlowTimeout
from tests.unit.test_conversation_handlers import Harness, ctx, text


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.deps.bots = Bots(harness.store, load_bot(DEFAULT_BOT.read_text()))
    return harness


async def say(h: Harness, body: str) -> list[Any]:
    [msg] = await h.deliver(text(body, h.customer))
    return h.sends(await h.handle(msg))


async def test_the_default_bot_greets_with_buttons_and_answers_its_faq(h: Harness) -> None:
    [greeting] = await say(h, "hello")
    assert greeting.payload["type"] == "interactive"
    buttons = greeting.payload["interactive"]["action"]["buttons"]
    assert {b["reply"]["id"] for b in buttons} >= {"hours", "support", "human"}
    [hours] = await say(h, "what are your opening hours?")
    assert hours.payload["type"] == "text" and "09:00" in hours.payload["text"]["body"]
    assert h.responder.calls == []  # no LLM was asked: the rules answered
    replied = [d for t, d in await h.events() if t == "BotReplied"]
    assert len(replied) == 2


async def test_a_support_flow_collects_its_slots_across_a_restart(h: Harness) -> None:
    await say(h, "I need help with an order")
    # A restart: the kept conversation is gone, the flow continues from the events.
    h.deps.conversations = type(h.deps.conversations)(h.store)
    await say(h, "Ada")
    [retry] = await say(h, "no idea")  # not an order number
    assert "A-123" in retry.payload["text"]["body"] or "like" in retry.payload["text"]["body"]
    await say(h, "A-123")
    done = await say(h, "the cake was squashed")
    state = await load(h.store, h.cid)
    assert state.bot.flow == ""  # the flow ended
    assert "A-123" in done[0].payload["text"]["body"]
    assert "support" in state.tags
    kinds = [t for t, _ in await h.events()]
    assert "BotStateChanged" in kinds and "BotActed" in kinds


async def test_asking_for_a_person_hands_off_and_the_bot_goes_silent(h: Harness) -> None:
    [passing] = await say(h, "can I talk to a real person please")
    assert "colleague" in passing.payload["text"]["body"]
    state = await load(h.store, h.cid)
    assert state.mode == "waiting"
    assert await say(h, "hello?") == []  # a person has it now: the bot stays silent
    assert [t for t, _ in await h.events()].count("HandedOff") == 1


# --- flow time-outs on the timer -------------------------------------------------------------


async def timeout(h: Harness, deadline: float) -> list[Any]:
    msg = FlowTimeout(conversation_id=h.cid, deadline=deadline)
    return h.sends(await h.run(on_flow_timeout(msg, ctx(h.cid), h.deps)))


async def in_the_support_flow(h: Harness) -> float:
    await say(h, "I need help with an order")
    state = await load(h.store, h.cid)
    assert state.bot.flow == "support" and state.bot.deadline > time.time()
    return state.bot.deadline


async def test_the_timer_ends_a_flow_left_unanswered_with_its_timeout_message(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = await in_the_support_flow(h)
    assert await timeout(h, deadline) == []  # not due yet (a clock behind): nothing
    later = deadline + 1
    monkeypatch.setattr(time, "time", lambda: later)
    [closing] = await timeout(h, deadline)
    assert "help" in closing.payload["text"]["body"].lower()  # "write 'help' to start again"
    state = await load(h.store, h.cid)
    assert state.bot.flow == "" and state.bot.deadline == 0
    kinds = [t for t, _ in await h.events()]
    assert kinds.count("FlowTimedOut") == 1
    # The timer firing again (a lost claim, a second instance) changes and sends nothing.
    assert await timeout(h, deadline) == []
    assert [t for t, _ in await h.events()] == kinds
    # A restart rebuilds the ended flow from the events: the next message starts afresh.
    h.deps.conversations = type(h.deps.conversations)(h.store)
    [greeting] = await say(h, "hello")
    assert greeting.payload["type"] == "interactive"


async def test_a_customer_who_answered_in_time_is_not_timed_out(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = await in_the_support_flow(h)
    monkeypatch.setattr(time, "time", lambda: deadline - 60)
    await say(h, "Ada")  # answers the step a minute before its deadline: a new one
    state = await load(h.store, h.cid)
    assert state.bot.flow == "support" and state.bot.deadline > deadline
    monkeypatch.setattr(time, "time", lambda: deadline + 1)
    before = [t for t, _ in await h.events()]
    assert await timeout(h, deadline) == []  # the old deadline's timer: nothing
    assert [t for t, _ in await h.events()] == before
    assert await timeout(h, state.bot.deadline) == []  # the new one is not due yet


async def test_a_flow_handed_to_a_person_ends_on_the_timer_in_silence(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = await in_the_support_flow(h)
    # A person takes the conversation (the handoff API's command) while the flow waits.
    change = ChangeHandling(
        conversation_id=h.cid, request_id="r1", action="handoff", actor="key_1", reason="agent"
    )
    await h.run(on_change_handling(change, ctx(h.cid), h.deps))
    handed = await load(h.store, h.cid)
    assert handed.mode != "bot" and handed.bot.flow == "support"
    monkeypatch.setattr(time, "time", lambda: deadline + 1)
    assert await timeout(h, deadline) == []  # the bot says nothing to a handed-off customer
    after = await load(h.store, h.cid)
    assert after.bot.flow == ""
    assert [t for t, _ in await h.events()].count("FlowTimedOut") == 1


# --- business hours and handoff triggers, in the running conversation ------------------------

HOURS_BOT = """
version: 1
language: en
business_hours:
  timezone: Europe/Rome
  weekly: {mon: ["09:00-17:00"]}
  away_message: "We're closed; we answer from {{business.next_open}}."
  away_every: 12h
  outside_hours: [human, hours]
rules:
  - {id: human, match: {any: [agent, operatore]}, reply: "Passing you on.", handoff: true,
     interrupt: true}
  - {id: hours, match: {any: [hours]}, reply: "Open {{business.hours}}."}
  - {id: hi, match: {any: [hi]}, reply: "Hello!"}
  - {id: order, match: {any: [order]}, flow: order}
  - {id: talk, match: {any: [chat]}, flow: talk}
fallback: {llm: true, text: "Sorry."}
flows:
  order:
    steps:
      - {id: number, ask: "Number?", validate: number, retry: "A number, please.",
         max_retries: 1, save: n}
    done: {reply: "Got {{slots.n}}."}
  talk:
    steps:
      - {id: topic, ask: "About what?", save: topic}
    done:
      reply: "Someone will call you about {{slots.topic}}."
      actions: [{handoff: true}]
"""
MONDAY_10 = 1795424400  # Monday 2026-11-23 10:00 in Rome (09:00 UTC)
SUNDAY_10 = MONDAY_10 - 86400


class LLM:
    """The responder's LLM side: answers every bot request with `answer`."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.asked = 0

    async def complete(self, request: Any, conversation: Any, profile: Any = None) -> str | None:
        self.asked += 1
        return self.answer


@pytest.fixture
def hb() -> Harness:
    harness = Harness()
    harness.deps.bots = Bots(harness.store, load_bot(HOURS_BOT))
    return harness


async def say_at(h: Harness, body: str, at: int) -> list[str]:
    message = text(body, h.customer)
    message["timestamp"] = str(at)
    [msg] = await h.deliver(message)
    return [s.payload["text"]["body"] for s in h.sends(await h.handle(msg))]


async def test_out_of_hours_the_away_message_goes_once_per_period_at_metas_timestamp(
    hb: Harness,
) -> None:
    assert await say_at(hb, "hi", MONDAY_10) == ["Hello!"]
    # Sunday by Meta's timestamp, whatever the time of handling: closed.
    [away] = await say_at(hb, "hi", SUNDAY_10)
    assert away.startswith("We're closed; we answer from ") and "09:00" in away
    assert await say_at(hb, "hi again", SUNDAY_10 + 60) == []  # within away_every: silence
    # A rule listed in outside_hours still answers, and no away message on top of it.
    assert await say_at(hb, "opening hours", SUNDAY_10 + 120) == ["Open Monday 09:00\u201317:00."]
    [again] = await say_at(hb, "hi", SUNDAY_10 + 13 * 3600)  # a new period
    assert again.startswith("We're closed")


async def test_handoff_by_the_customers_words_even_out_of_hours_then_silence(
    hb: Harness,
) -> None:
    assert await say_at(hb, "voglio un operatore", SUNDAY_10) == ["Passing you on."]
    state = await load(hb.store, hb.cid)
    assert state.mode == "waiting"
    assert await say_at(hb, "hi", MONDAY_10) == []  # the bot stays silent, open or not
    assert [t for t, _ in await hb.events()].count("HandedOff") == 1


async def test_handoff_when_a_steps_retries_run_out(hb: Harness) -> None:
    assert await say_at(hb, "order", MONDAY_10) == ["Number?"]
    assert await say_at(hb, "many", MONDAY_10 + 1) == ["A number, please."]
    await say_at(hb, "lots", MONDAY_10 + 2)  # the last retry failed: on_fail handoff
    state = await load(hb.store, hb.cid)
    assert state.mode == "waiting" and state.bot.flow == ""
    assert await say_at(hb, "12", MONDAY_10 + 3) == []


async def test_handoff_by_a_flow_action(hb: Harness) -> None:
    assert await say_at(hb, "chat", MONDAY_10) == ["About what?"]
    assert await say_at(hb, "my bill", MONDAY_10 + 1) == ["Someone will call you about my bill."]
    assert (await load(hb.store, hb.cid)).mode == "waiting"
    assert await say_at(hb, "hi", MONDAY_10 + 2) == []


async def test_handoff_when_the_llm_refuses(hb: Harness) -> None:
    llm = LLM("[HANDOFF]")
    hb.responder.complete = llm.complete  # type: ignore[attr-defined]
    said = await say_at(hb, "can you refund my cake", MONDAY_10)
    assert llm.asked == 1 and said and "[HANDOFF]" not in said[0]
    state = await load(hb.store, hb.cid)
    assert state.mode == "waiting"
    assert await say_at(hb, "hello?", MONDAY_10 + 1) == []
    assert llm.asked == 1  # not asked again while a person has it


async def test_the_llm_failing_says_the_fallback_text(hb: Harness) -> None:
    hb.responder.complete = LLM(None).complete  # type: ignore[attr-defined]
    assert await say_at(hb, "can you refund my cake", MONDAY_10) == ["Sorry."]
    assert (await load(hb.store, hb.cid)).mode == "bot"
