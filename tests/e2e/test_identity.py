"""Customers who hide their number: Meta sends a business-scoped user id instead of (or
beside) the wa_id. Such a customer is answered (by `recipient`), and stays one customer and
one conversation whichever id later messages carry."""

from __future__ import annotations

import time
import uuid
from typing import Any

from shared.payloads import messages_payload
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for

PHONE = "100000000000001"


def message(body: str, wa_id: str | None, user_id: str | None) -> dict[str, Any]:
    sent: dict[str, Any] = {
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": body},
    }
    if wa_id:
        sent["from"] = wa_id
    if user_id:
        sent["from_user_id"] = user_id
    return sent


def payload(body: str, wa_id: str | None, user_id: str | None) -> dict[str, Any]:
    delivery = messages_payload([message(body, wa_id, user_id)], wa_id or str(user_id))
    contact: dict[str, Any] = {"profile": {"name": "Hidden Number"}}
    if wa_id:
        contact["wa_id"] = wa_id
    if user_id:
        contact["user_id"] = user_id
    delivery["entry"][0]["changes"][0]["value"]["contacts"] = [contact]
    return delivery


def test_a_customer_known_by_a_user_id_only_is_answered_and_stays_one_conversation(
    bot: Running,
) -> None:
    user_id, wa_id = f"US.{uuid.uuid4().int % 10**20}", new_customer()
    assert bot.post(payload("hello from a hidden number", None, user_id))[0] == 200
    wait_for(lambda: bot.graph.sent_to(user_id), timeout=30, message="a reply by recipient")
    [first] = bot.graph.sent_to(user_id)
    assert first["addressed_by"] == "recipient"
    assert first["body"]["recipient"] == user_id and "to" not in first["body"]

    # Both ids together, then the wa_id alone: the same customer, the same conversation.
    assert bot.post(payload("now with my number", wa_id, user_id))[0] == 200
    wait_for(lambda: len(bot.graph.sent_to(user_id)) == 2, timeout=30)
    assert bot.post(payload("and the number alone", wa_id, None))[0] == 200
    wait_for(lambda: len(bot.graph.sent_to(user_id)) == 3, timeout=30)

    inbox = bot.events("inbox-" + bot.conversation_id(PHONE, user_id))
    assert [d["text"]["body"] for _, d in [(t, d["message"]) for t, d in inbox]] == [
        "hello from a hidden number",
        "now with my number",
        "and the number alone",
    ]
    assert [(d["wa_id"], d["user_id"]) for _, d in inbox] == [
        ("", user_id),
        (wa_id, user_id),
        (wa_id, ""),
    ]
    assert (
        bot.events("inbox-" + bot.conversation_id(PHONE, wa_id)) == []
    )  # never a second conversation
    assert bot.graph.sent_to(wa_id) == []
    replies = [
        d["text"]
        for t, d in bot.events("conversation-" + bot.conversation_id(PHONE, user_id))
        if t == "BotReplied"
    ]
    assert [s["body"]["text"]["body"] for s in bot.graph.sent_to(user_id)] == replies
