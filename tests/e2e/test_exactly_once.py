"""Meta delivers at least once; the customer hears back exactly once, and in order."""

from __future__ import annotations

import copy
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.payloads import messages_payload, text_message
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import Fault, wait_for

PHONE_NUMBER_ID = "100000000000001"


def text_item(customer: str, body: str) -> dict[str, Any]:
    return {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": body},
    }


def answered_with(bot: Running, customer: str, expected: list[str], timeout: float = 20) -> None:
    """Wait until the customer has exactly these replies (a reply that may still come is
    ruled out by a fence: `Running.fence`)."""
    wait_for(
        lambda: bot.graph.texts_to(customer) == expected,
        timeout=timeout,
        message=f"{customer} answered {expected}; got {bot.graph.texts_to(customer)}",
    )


def test_the_same_delivery_posted_three_times_in_a_row_is_answered_once(bot: Running) -> None:
    customer = new_customer()
    payload = text_message("only once please", customer=customer)
    for _ in range(3):
        assert bot.post(payload)[0] == 200
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: only once please", fence]
    wamid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert len(bot.events_of_type("MessageReceived", wamid=wamid)) == 1


def test_the_same_delivery_posted_five_times_at_once_is_answered_once(bot: Running) -> None:
    customer = new_customer()
    payload = text_message("all at once", customer=customer)
    start = threading.Barrier(5)

    def post() -> int:
        start.wait()
        return bot.post(payload)[0]

    with ThreadPoolExecutor(max_workers=5) as pool:
        assert list(pool.map(lambda _: post(), range(5))) == [200] * 5
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: all at once", fence]
    wamid = payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert len(bot.events_of_type("MessageReceived", wamid=wamid)) == 1


def test_a_batched_delivery_of_two_customers_across_two_entries_is_answered_in_order(
    bot: Running,
) -> None:
    alice, bob = new_customer(), new_customer()
    first = messages_payload(
        [text_item(alice, "a1"), text_item(bob, "b1"), text_item(alice, "a2")], customer=alice
    )
    second = messages_payload(
        [text_item(bob, "b2"), text_item(alice, "a3"), text_item(bob, "b3")], customer=bob
    )
    for payload in (first, second):
        value = payload["entry"][0]["changes"][0]["value"]
        value["contacts"] = [
            {"profile": {"name": "Alice"}, "wa_id": alice},
            {"profile": {"name": "Bob"}, "wa_id": bob},
        ]
    batched = copy.deepcopy(first)
    batched["entry"].append(second["entry"][0])
    assert bot.post(batched)[0] == 200

    answered_with(bot, alice, ["echo: a1", "echo: a2", "echo: a3"])
    answered_with(bot, bob, ["echo: b1", "echo: b2", "echo: b3"])
    for customer in (alice, bob):
        inbox = bot.events("inbox-" + bot.conversation_id(PHONE_NUMBER_ID, customer))
        assert len(inbox) == 3
        assert {d["customer_name"] for _, d in inbox} == {"Alice" if customer == alice else "Bob"}
    # And the batch redelivered as a whole changes nothing.
    assert bot.post(batched)[0] == 200
    fences = bot.fences([alice, bob])
    assert bot.graph.texts_to(alice) == ["echo: a1", "echo: a2", "echo: a3", fences[alice]]
    assert bot.graph.texts_to(bob) == ["echo: b1", "echo: b2", "echo: b3", fences[bob]]


def test_a_redelivery_after_the_reply_was_sent_is_counted_and_not_answered_again(
    bot: Running,
) -> None:
    customer = new_customer()
    payload = text_message("answered already", customer=customer)
    assert bot.post(payload)[0] == 200
    answered_with(bot, customer, ["echo: answered already"])
    before = bot.metric("dedup", "dedup_duplicates_total", kind="message")

    assert bot.post(payload)[0] == 200
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: answered already", fence]
    assert bot.metric("dedup", "dedup_duplicates_total", kind="message") >= before + 1
    # One send for the first message: the redelivered reply command found its outbox done.
    conversation = bot.conversation_id(PHONE_NUMBER_ID, customer)
    sends = bot.events_of_type("SendStarted", conversation_id=conversation)
    assert len(sends) == 2


def test_many_customers_writing_at_once_each_get_their_replies_in_order(bot: Running) -> None:
    customers = [new_customer() for _ in range(40)]
    texts = [f"m{i}" for i in range(1, 6)]

    def converse(customer: str) -> list[int]:
        return [bot.post(text_message(t, customer=customer))[0] for t in texts]

    with ThreadPoolExecutor(max_workers=len(customers)) as pool:
        statuses = list(pool.map(converse, customers))
    assert statuses == [[200] * 5] * len(customers)

    expected = [f"echo: {t}" for t in texts]
    fences = bot.fences(customers, timeout=60)
    wrong = {
        c: bot.graph.texts_to(c)
        for c in customers
        if bot.graph.texts_to(c) != [*expected, fences[c]]
    }
    assert wrong == {}


def test_a_customer_with_a_slow_llm_call_does_not_hold_back_another(bot: Running) -> None:
    slow, quick = new_customer(), new_customer()
    marker = f"slow-{uuid.uuid4().hex}"

    def about_marker(rec: Any) -> bool:
        return marker in rec.body.decode()

    bot.openai.inject(Fault(status=None, delay=3, match=about_marker))
    assert bot.post(text_message(marker, customer=slow))[0] == 200
    wait_for(
        lambda: bot.openai.requests_matching(about_marker) != [],
        timeout=20,
        message="the slow customer's LLM call started",
    )
    assert bot.post(text_message("quick one", customer=quick))[0] == 200

    answered_with(bot, quick, ["echo: quick one"])
    assert bot.graph.texts_to(slow) == []  # still waiting on its LLM call
    answered_with(bot, slow, [f"echo: {marker}"])
    assert bot.openai.pending_faults() == 0
