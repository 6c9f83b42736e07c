"""The LLM call: what it is asked, and how the bot rides out OpenAI's failures."""

from __future__ import annotations

import time
import uuid
from typing import Any

from shared.payloads import text_message
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import RecordedRequest, openai_error, wait_for

PHONE_NUMBER_ID = "100000000000001"


def last_user_text(rec: RecordedRequest) -> str:
    messages = rec.json.get("messages") if isinstance(rec.json, dict) else None
    return str(messages[-1].get("content", "")) if messages else ""


def mentions(marker: str) -> Any:
    """Fault match / filter: a completion request answering a customer message that contains
    marker (later requests carry it in their history too, they do not count)."""

    def pred(rec: RecordedRequest) -> bool:
        return marker in last_user_text(rec)

    return pred


def answered_with(bot: Running, customer: str, expected: list[str], timeout: float = 20) -> None:
    wait_for(
        lambda: bot.graph.texts_to(customer) == expected,
        timeout=timeout,
        message=f"{customer} answered {expected}; got {bot.graph.texts_to(customer)}",
    )


def test_the_prompt_has_the_persona_and_a_bounded_history_with_the_bot_replies(
    bot: Running,
) -> None:
    customer = new_customer()
    marker = uuid.uuid4().hex[:8]
    texts = [f"{marker} q{i}" for i in range(1, 9)]
    for text in texts:
        assert bot.post(text_message(text, customer=customer))[0] == 200
    answered_with(bot, customer, [f"echo: {t}" for t in texts])

    requests = [r for r in bot.openai.requests_matching(mentions(marker)) if not r.fault]
    assert [last_user_text(r) for r in requests] == texts
    persona = bot.stack.settings.bot_persona
    limit = int(bot.env["HISTORY_TURNS"])
    for n, request in enumerate(requests):
        system, *history = request.json["messages"]
        assert system == {"role": "system", "content": persona}
        assert 1 <= len(history) <= limit
        # The history is the conversation so far, bot replies included, oldest first.
        so_far = [
            m
            for t in texts[: n + 1]
            for m in (
                {"role": "user", "content": t},
                {"role": "assistant", "content": f"echo: {t}"},
            )
        ][:-1]
        assert history == so_far[-len(history) :]
        assert len(history) == min(limit, len(so_far))
    # The last request could not fit the whole chat: the oldest turns were left out.
    assert {"role": "user", "content": texts[0]} not in requests[-1].json["messages"]


def test_one_openai_500_is_retried_and_the_reply_arrives_once(bot: Running) -> None:
    customer = new_customer()
    marker = f"flaky-{uuid.uuid4().hex}"
    bot.openai.inject(openai_error(500, match=mentions(marker)))
    assert bot.post(text_message(marker, customer=customer))[0] == 200
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == [f"echo: {marker}", fence]
    calls = bot.openai.requests_matching(mentions(marker))
    assert [c.fault for c in calls] == [True, False]
    conversation = "conversation-" + bot.conversation_id(PHONE_NUMBER_ID, customer)
    assert [t for t, _ in bot.events(conversation)].count("BotReplied") == 2


def test_a_429_with_retry_after_is_honoured_and_the_reply_arrives_after_it(
    bot: Running,
) -> None:
    customer = new_customer()
    marker = f"throttled-{uuid.uuid4().hex}"
    bot.openai.inject(
        openai_error(
            429,
            "Rate limit reached",
            "requests",
            match=mentions(marker),
            headers={"Retry-After": "2"},
        )
    )
    assert bot.post(text_message(marker, customer=customer))[0] == 200
    answered_with(bot, customer, [f"echo: {marker}"])
    calls = bot.openai.requests_matching(mentions(marker))
    assert [c.fault for c in calls] == [True, False]
    # Asked to wait 2 s, the bot did not call again sooner.
    assert calls[1].received_at - calls[0].received_at >= 1.9
    [reply] = bot.graph.sent_to(customer)
    assert reply["received_at"] >= calls[1].received_at


def test_while_openai_is_down_nothing_is_answered_and_nothing_is_lost(bot: Running) -> None:
    customer = new_customer()
    marker = uuid.uuid4().hex[:8]
    texts = [f"{marker} d{i}" for i in range(1, 4)]
    conversation = bot.conversation_id(PHONE_NUMBER_ID, customer)
    dead_before = bot.metric("conversation", "dead_lettered_messages_total")

    bot.openai.fail_always(openai_error(500))
    for text in texts:
        assert bot.post(text_message(text, customer=customer))[0] == 200
    fail_max = bot.stack.settings.breaker_fail_max
    wait_for(
        lambda: len(bot.openai.requests_matching(mentions(marker))) >= fail_max,
        timeout=20,
        message="enough failed calls to open the breaker",
    )
    # Down for longer than the breaker's reset timeout, so it also fails its half-open probe.
    time.sleep(bot.stack.settings.breaker_reset_seconds + 1.5)
    assert bot.graph.texts_to(customer) == []
    assert bot.events_of_type("TurnFailed", conversation_id=conversation) == []
    assert bot.events(f"conversation-{conversation}") == []
    calls_while_down = len(bot.openai.requests_matching(mentions(marker)))

    bot.openai.clear_faults()
    answered_with(bot, customer, [f"echo: {t}" for t in texts], timeout=30)
    # Nothing more comes for them either (a reply from the offline rules, a second one).
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == [*(f"echo: {t}" for t in texts), fence]
    assert bot.metric("conversation", "dead_lettered_messages_total") == dead_before
    # The breaker kept the bot from hammering OpenAI: a handful of calls in the whole outage.
    assert calls_while_down <= 3 * fail_max
    types = [t for t, _ in bot.events(f"conversation-{conversation}")]
    assert types == ["CustomerWrote", "BotReplied"] * 4


def test_an_openai_400_is_answered_by_the_offline_rules(bot: Running) -> None:
    customer = new_customer()
    marker = f"refused-{uuid.uuid4().hex}"
    bot.openai.inject(
        openai_error(
            400,
            "This model's maximum context length is exceeded",
            "invalid_request_error",
            match=mentions(marker),
        )
    )
    assert bot.post(text_message(marker, customer=customer))[0] == 200
    fence = bot.fence(customer)

    first, second = bot.graph.texts_to(customer)
    assert second == fence
    # Not the LLM's answer: the offline rules acknowledge what the customer said.
    assert not first.startswith("echo:")
    assert f'"{marker}"' in first
    # A 400 is not retried.
    assert len(bot.openai.requests_matching(mentions(marker))) == 1
    replies = [
        d
        for t, d in bot.events("conversation-" + bot.conversation_id(PHONE_NUMBER_ID, customer))
        if t == "BotReplied"
    ]
    assert [r["text"] for r in replies] == [first, fence]
    # The turn records who actually wrote the reply: the offline rules, as a fallback.
    assert [r["responder"] for r in replies] == ["offline-fallback", "openai"]
