"""Sending to the Graph API: read marks, Meta's errors, and delivery statuses."""

from __future__ import annotations

import uuid
from typing import Any

from shared.payloads import status_payload, text_message
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import Fault, RecordedRequest, meta_error, sends_to, wait_for

PHONE_NUMBER_ID = "100000000000001"
RANK = ["accepted", "sent", "delivered", "read", "played"]


def answered_with(bot: Running, customer: str, expected: list[str], timeout: float = 20) -> None:
    wait_for(
        lambda: bot.graph.texts_to(customer) == expected,
        timeout=timeout,
        message=f"{customer} answered {expected}; got {bot.graph.texts_to(customer)}",
    )


def send_requests(bot: Running, customer: str, text: str) -> list[RecordedRequest]:
    """Every send of this reply text the Graph API saw, failed ones included."""

    def pred(rec: RecordedRequest) -> bool:
        body: Any = rec.json if isinstance(rec.json, dict) else {}
        return sends_to(customer)(rec) and (body.get("text") or {}).get("body") == text

    return bot.graph.requests_matching(pred)


def lifecycle(bot: Running, wamid: str) -> list[dict[str, Any]]:
    return [d for t, d in bot.events(f"message-{wamid}") if t == "LifecycleChanged"]


def read_marks(bot: Running, wamid: str) -> list[dict[str, Any]]:
    return [m for m in bot.graph.read_marks if m["message_id"] == wamid]


def test_a_quick_reply_carries_the_message_read_mark_once(bot: Running) -> None:
    customer = new_customer()
    wamid = f"wamid.{uuid.uuid4().hex}"
    assert bot.post(text_message("are you there?", customer=customer, wamid=wamid))[0] == 200
    answered_with(bot, customer, ["echo: are you there?"])
    wait_for(lambda: read_marks(bot, wamid) != [], timeout=10, message="never marked read")

    [mark] = read_marks(bot, wamid)  # once: either ahead of the reply or with it, not both
    assert mark["phone_number_id"] == PHONE_NUMBER_ID
    [reply] = bot.graph.sent_to(customer)
    if "typing_indicator" in mark["body"]:
        # The LLM took longer than the grace on this machine: marked read ahead of it.
        assert mark["received_at"] <= reply["received_at"]


def test_a_slow_reply_is_preceded_by_the_read_mark_and_typing_indicator(bot: Running) -> None:
    customer = new_customer()
    wamid = f"wamid.{uuid.uuid4().hex}"
    marker = f"slow-{uuid.uuid4().hex}"
    bot.openai.inject(Fault(status=None, delay=2, match=lambda rec: marker in rec.body.decode()))
    assert bot.post(text_message(marker, customer=customer, wamid=wamid))[0] == 200
    answered_with(bot, customer, [f"echo: {marker}"])

    [mark] = read_marks(bot, wamid)
    assert mark["phone_number_id"] == PHONE_NUMBER_ID
    assert mark["body"]["typing_indicator"] == {"type": "text"}
    [reply] = bot.graph.sent_to(customer)
    assert mark["received_at"] <= reply["received_at"]


def test_one_graph_500_is_retried_and_the_message_is_sent_once(bot: Running) -> None:
    customer = new_customer()
    bot.graph.inject(meta_error(131000, status=500, match=sends_to(customer)))
    assert bot.post(text_message("flaky graph", customer=customer))[0] == 200
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: flaky graph", fence]
    attempts = send_requests(bot, customer, "echo: flaky graph")
    assert [a.fault for a in attempts] == [True, False]


def test_a_closed_window_131047_fails_that_send_for_good_and_the_next_one_is_answered(
    bot: Running,
) -> None:
    customer = new_customer()
    conversation = bot.conversation_id(PHONE_NUMBER_ID, customer)
    bot.graph.inject(meta_error(131047, status=400, match=sends_to(customer)))
    assert bot.post(text_message("too late", customer=customer))[0] == 200
    wait_for(
        lambda: bot.events_of_type("SendFailed", conversation_id=conversation) != [],
        timeout=20,
        message="SendFailed for the refused reply",
    )
    [failed] = bot.events_of_type("SendFailed", conversation_id=conversation)
    assert failed["code"] == 131047
    assert failed["seq"] == 0

    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == [fence]
    # Exactly one attempt at the refused reply: retrying cannot reopen the window.
    assert [a.fault for a in send_requests(bot, customer, "echo: too late")] == [True]
    assert len(bot.events_of_type("SendStarted", conversation_id=conversation)) == 2


def test_a_throughput_limit_130429_delays_the_send_which_then_happens_once(
    bot: Running,
) -> None:
    customer = new_customer()
    bot.graph.inject(meta_error(130429, status=400, match=sends_to(customer)))
    assert bot.post(text_message("busy day", customer=customer))[0] == 200
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: busy day", fence]
    attempts = send_requests(bot, customer, "echo: busy day")
    assert [a.fault for a in attempts] == [True, False]
    conversation = bot.conversation_id(PHONE_NUMBER_ID, customer)
    assert bot.events_of_type("SendFailed", conversation_id=conversation) == []


def test_statuses_out_of_order_never_move_the_lifecycle_back_and_failed_is_final(
    bot: Running,
) -> None:
    reader, failer = new_customer(), new_customer()
    for customer in (reader, failer):
        assert bot.post(text_message("status please", customer=customer))[0] == 200
    answered_with(bot, reader, ["echo: status please"])
    answered_with(bot, failer, ["echo: status please"])
    read_wamid = bot.graph.sent_to(reader)[0]["wamid"]
    failed_wamid = bot.graph.sent_to(failer)[0]["wamid"]

    # Meta's statuses can arrive in any order: read first, then the older sent and delivered.
    for status in ("read", "sent", "delivered"):
        assert bot.post(status_payload(read_wamid, status, reader))[0] == 200
    errors = [{"code": 131026, "title": "Message undeliverable", "message": "undeliverable"}]
    assert bot.post(status_payload(failed_wamid, "sent", failer))[0] == 200
    assert bot.post(status_payload(failed_wamid, "failed", failer, errors=errors))[0] == 200
    assert bot.post(status_payload(failed_wamid, "delivered", failer))[0] == 200

    # Statuses and the fence's reply go through the same outbound lane of each customer.
    fences = bot.fences([reader, failer])
    for customer in (reader, failer):
        assert bot.graph.texts_to(customer) == ["echo: status please", fences[customer]]

    received = [
        d["status"] for t, d in bot.events(f"message-{read_wamid}") if t == "StatusReceived"
    ]
    assert sorted(received) == ["delivered", "read", "sent"]
    read_life = [d["status"] for d in lifecycle(bot, read_wamid)]
    assert read_life and read_life[-1] == "read"
    assert [RANK.index(s) for s in read_life] == sorted({RANK.index(s) for s in read_life})

    failed_life = lifecycle(bot, failed_wamid)
    assert failed_life and failed_life[-1]["status"] == "failed"
    assert [e["code"] for e in failed_life[-1]["errors"]] == [131026]
    assert [d["status"] for d in failed_life].count("failed") == 1
    assert failed_life[-1]["conversation_id"] == bot.conversation_id(PHONE_NUMBER_ID, failer)


def test_a_slow_graph_api_delays_but_does_not_duplicate_the_send(bot: Running) -> None:
    customer = new_customer()
    # Slower than usual, within the client's timeout: one send, not a retry on top of it.
    bot.graph.inject(Fault(status=None, delay=1.5, match=sends_to(customer)))
    assert bot.post(text_message("take your time", customer=customer))[0] == 200
    fence = bot.fence(customer)
    assert bot.graph.texts_to(customer) == ["echo: take your time", fence]
    assert len(send_requests(bot, customer, "echo: take your time")) == 1
