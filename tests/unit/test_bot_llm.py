"""The LLM as a responder: the request `respond` returns, and `finish` with an answer, a
failure (the fallback text) or a refusal (a handoff)."""

from __future__ import annotations

import textwrap

from shared.bot import BotState, Contact, Emit, Handoff, LLMRequest, Turn, finish, load, respond
from shared.bot.loader import Bot

NOW = 1_800_000_000.0

BOT = """
language: en
persona: "You are the assistant of Bottega Rossi."
llm: {max_tokens: 200, timeout: 8s, history: 6}
rules:
  - id: hi
    match: {any: [hi]}
    reply: "Hi!"
  - id: advice
    match: {any: [advice]}
    flow: advice
fallback:
  llm: true
  text: {en: "Sorry, I didn't get that.", it: "Scusa, non ho capito."}
  max_tokens: 100
flows:
  advice:
    steps:
      - {id: taste, ask: "Sweet or savoury?", save: taste}
      - id: suggest
        llm:
          prompt: "Suggest one of our cakes for a {{slots.taste}} tooth."
          fallback: "Try our torta di riso!"
          timeout: 5s
      - {id: more, ask: "Anything else?", save: more}
    done:
      reply: "Thanks!"
      actions:
        - emit: advice_given
        - llm: {prompt: "Say goodbye about {{slots.more}}."}
"""


def make(text: str = BOT) -> Bot:
    return load(textwrap.dedent(text))


def turn(bot: Bot, text: str, state: BotState | None = None, contact: Contact | None = None):
    return respond(
        bot, state or BotState(), Turn(text=text, timestamp=NOW), contact or Contact(), NOW
    )


def test_the_fallback_asks_the_llm_with_the_persona_and_the_history() -> None:
    outcome = turn(make(), "do you sell bread?")
    assert outcome.replies == [] and outcome.handled_by == "fallback"
    assert outcome.llm == LLMRequest(
        messages=[
            {
                "role": "system",
                "content": "You are the assistant of Bottega Rossi.\n\n"
                "If you cannot help with this, or the customer asks for a person, "
                "answer with only [HANDOFF].",
            }
        ],
        history=6,
        max_tokens=100,
        timeout=8.0,
        fallback="Sorry, I didn't get that.",
        handoff_marker="[HANDOFF]",
        handoff_reply="I'm passing you to a colleague, who will answer here.",
    )


def test_a_rule_that_matches_never_asks_the_llm() -> None:
    outcome = turn(make(), "hi")
    assert outcome.llm is None and outcome.replies[0]["text"]["body"] == "Hi!"


def test_finish_with_the_answer_and_with_a_failure() -> None:
    outcome = turn(make(), "do you sell bread?")
    answered = finish(outcome, "  Yes, every morning.  ")
    assert answered.replies == [{"type": "text", "text": {"body": "Yes, every morning."}}]
    assert answered.llm is None and answered.actions == []
    for failed in (None, "", "   "):
        assert finish(outcome, failed).replies == [
            {"type": "text", "text": {"body": "Sorry, I didn't get that."}}
        ]


def test_the_fallback_text_is_in_the_customers_language_and_the_llm_is_told_it() -> None:
    outcome = turn(make(), "avete il pane?", contact=Contact(attributes={"language": "it"}))
    assert outcome.llm is not None
    assert outcome.llm.fallback == "Scusa, non ho capito."
    assert "Answer in Italian." in outcome.llm.messages[0]["content"]
    assert "Answer in" not in turn(make(), "bread?").llm.messages[0]["content"]  # type: ignore[union-attr]


def test_a_refusal_hands_off() -> None:
    outcome = turn(make(), "I want to complain")
    handed = finish(outcome, "[handoff]")
    assert handed.actions == [Handoff("llm")]
    assert handed.replies == [
        {"type": "text", "text": {"body": "I'm passing you to a colleague, who will answer here."}}
    ]
    said = finish(outcome, "Let me find someone for you. [HANDOFF]\nThanks.")
    assert said.replies == [
        {"type": "text", "text": {"body": "Let me find someone for you.\nThanks."}}
    ]


def test_the_marker_is_configurable() -> None:
    bot = make(
        BOT.replace(
            "history: 6}", "history: 6, handoff_marker: '<<human>>', handoff_reply: 'One moment.'}"
        )
    )
    outcome = turn(bot, "complaint")
    assert "<<human>>" in outcome.llm.messages[0]["content"]  # type: ignore[union-attr]
    assert finish(outcome, "[HANDOFF]").actions == []
    handed = finish(outcome, "<<HUMAN>>")
    assert handed.actions == [Handoff("llm")]
    assert handed.replies == [{"type": "text", "text": {"body": "One moment."}}]


def test_with_llm_off_the_fallback_is_its_text() -> None:
    outcome = turn(make(BOT.replace("  llm: true\n", "  llm: false\n")), "bread?")
    assert outcome.llm is None
    assert outcome.replies == [{"type": "text", "text": {"body": "Sorry, I didn't get that."}}]


def test_an_llm_step_asks_with_its_prompt_and_the_slots_and_the_flow_goes_on_after() -> None:
    bot = make()
    state = turn(bot, "advice").state
    outcome = turn(bot, "sweet", state)
    assert outcome.llm is not None
    assert outcome.llm.history == 0 and outcome.llm.timeout == 5.0 and outcome.llm.max_tokens == 200
    assert outcome.llm.messages[1] == {
        "role": "user",
        "content": "Suggest one of our cakes for a sweet tooth.\n\ntaste: sweet",
    }
    assert outcome.replies == []
    assert outcome.after == [{"type": "text", "text": {"body": "Anything else?"}}]
    assert outcome.state.step == "more"
    done = finish(outcome, "The chocolate cake.")
    assert [r["text"]["body"] for r in done.replies] == ["The chocolate cake.", "Anything else?"]
    failed = finish(outcome, None)
    assert [r["text"]["body"] for r in failed.replies] == [
        "Try our torta di riso!",
        "Anything else?",
    ]


def test_a_refusal_in_a_flow_ends_it() -> None:
    bot = make()
    state = turn(bot, "advice").state
    outcome = finish(turn(bot, "sweet", state), "[HANDOFF]")
    assert outcome.state.flow == "" and outcome.actions == [Handoff("llm")]
    assert [r["text"]["body"] for r in outcome.replies] == [
        "I'm passing you to a colleague, who will answer here."
    ]


def test_the_done_llm_action_answers_after_the_reply() -> None:
    bot = make()
    state = turn(bot, "advice").state
    state = finish(turn(bot, "sweet", state), "Cake.").state
    outcome = turn(bot, "a card", state)
    assert outcome.replies == [{"type": "text", "text": {"body": "Thanks!"}}]
    assert outcome.actions == [Emit("advice_given", "advice", {"taste": "sweet", "more": "a card"})]
    assert outcome.llm is not None
    assert (
        outcome.llm.messages[1]["content"]
        == "Say goodbye about a card.\n\ntaste: sweet\nmore: a card"
    )
    assert outcome.llm.fallback == ""
    assert [r["text"]["body"] for r in finish(outcome, "Bye!").replies] == ["Thanks!", "Bye!"]
    assert [r["text"]["body"] for r in finish(outcome, None).replies] == ["Thanks!"]


def test_finish_without_a_request_changes_nothing() -> None:
    outcome = turn(make(), "hi")
    assert finish(outcome, "ignored") is outcome


def test_a_long_answer_is_cut_to_whatsapps_limit() -> None:
    done = finish(turn(make(), "bread?"), "x" * 5000)
    assert len(done.replies[0]["text"]["body"]) == 4096
