"""Poison messages: bounded attempts, then the dead-letters queue, and the conversation goes on."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aio_pika
import msgspec

from shared.broker.topology import DEAD_LETTERS
from shared.eventstore import NewEvent, event_id_for
from shared.eventstore.postgres import PostgresEventStore, create_pool
from shared.payloads import text_message
from shared.schemas import CustomerMessage
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for

PHONE_NUMBER_ID = "100000000000001"


async def _publish(amqp_url: str, messages: list[tuple[str, str, bytes]]) -> None:
    """(message_id, routing key, body) straight onto the conversation stage's exchange."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("conversation")
        for message_id, key, body in messages:
            await exchange.publish(
                aio_pika.Message(
                    body,
                    type="conversation.customer_message",
                    message_id=message_id,
                    correlation_id=message_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=key,
            )
    finally:
        await connection.close()


async def _take_dead_letters(amqp_url: str, message_ids: set[str]) -> dict[str, Any]:
    """Take ours out of the dead-letters queue, leave everyone else's where it was: theirs
    stay unacked on this channel and go back to the queue when it closes."""
    found: dict[str, Any] = {}
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(DEAD_LETTERS)
        while True:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            if message.message_id in message_ids:
                found.setdefault(message.message_id, []).append(
                    {
                        "headers": dict(message.headers or {}),
                        "routing_key": message.routing_key,
                        "body": message.body,
                    }
                )
                await message.ack()
    finally:
        await connection.close()
    return found


async def _seed_inbox(database_url: str, conversation_id: str, data: dict[str, Any]) -> int:
    """What dedup would have recorded for the poison message, so it owns its inbox seq."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        store = PostgresEventStore(pool)
        [appended] = await store.append(
            f"inbox-{conversation_id}",
            [NewEvent("MessageReceived", data, {}, event_id_for("message", data["wamid"]))],
            expected_version=-1,
        )
        return appended.stream_version
    finally:
        await pool.close()


def test_poison_messages_end_in_dead_letters_and_the_conversation_moves_on(
    bot: Running,
) -> None:
    run = asyncio.new_event_loop()
    try:
        _poison_messages(bot, run)
    finally:
        run.close()


def _poison_messages(bot: Running, run: asyncio.AbstractEventLoop) -> None:
    broken_customer, junk_customer = new_customer(), new_customer()
    broken_cid = f"{PHONE_NUMBER_ID}.{broken_customer}"
    junk_cid = f"{PHONE_NUMBER_ID}.{junk_customer}"
    max_attempts = bot.stack.settings.max_attempts

    # 1. Decodes as a CustomerMessage, but its event lacks phone_number_id: the handler
    #    raises on every attempt.
    wamid = f"wamid.poison.{uuid.uuid4().hex}"
    broken_event = {
        "conversation_id": broken_cid,
        "customer": broken_customer,
        "customer_name": "Poison",
        "wamid": wamid,
        "type": "text",
        "timestamp": "1700000000",
        "message": {"from": broken_customer, "id": wamid, "type": "text", "text": {"body": "x"}},
    }
    seq = run.run_until_complete(_seed_inbox(bot.database_url, broken_cid, broken_event))
    broken_body = msgspec.json.encode(
        CustomerMessage(conversation_id=broken_cid, seq=seq, wamid=wamid, event=broken_event)
    )
    # 2. Not even JSON.
    junk_body = b"{this is not json " + uuid.uuid4().hex.encode()

    broken_id, junk_id = f"poison-{uuid.uuid4().hex}", f"junk-{uuid.uuid4().hex}"
    dead_before = bot.metric("conversation", "dead_lettered_messages_total")
    run.run_until_complete(
        _publish(
            bot.amqp_url, [(broken_id, broken_cid, broken_body), (junk_id, junk_cid, junk_body)]
        )
    )

    # The dead-letter hook records the failed turn, so the conversation is not stuck on it.
    wait_for(
        lambda: any(t == "TurnFailed" for t, _ in bot.events(f"conversation-{broken_cid}")),
        timeout=30,
        message="TurnFailed for the poison message",
    )
    wait_for(
        lambda: bot.metric("conversation", "dead_lettered_messages_total") >= dead_before + 2,
        timeout=30,
        message="both poison messages dead-lettered",
    )
    [failed] = [d for t, d in bot.events(f"conversation-{broken_cid}") if t == "TurnFailed"]
    assert failed["seq"] == seq
    assert "phone_number_id" in failed["error"]

    # 3. The next real message of each conversation is answered.
    for customer in (broken_customer, junk_customer):
        assert bot.post(text_message("still there?", customer=customer))[0] == 200
    wait_for(lambda: bot.graph.texts_to(broken_customer) == ["echo: still there?"], timeout=20)
    wait_for(lambda: bot.graph.texts_to(junk_customer) == ["echo: still there?"], timeout=20)

    # 4. Each poison message is in the dead letters once, with why, where and how often.
    deadline = time.monotonic() + 20
    taken: dict[str, list[Any]] = {}
    while time.monotonic() < deadline and set(taken) != {broken_id, junk_id}:
        for key, found in run.run_until_complete(
            _take_dead_letters(bot.amqp_url, {broken_id, junk_id})
        ).items():
            taken.setdefault(key, []).extend(found)
    assert set(taken) == {broken_id, junk_id}
    [broken] = taken[broken_id]
    [junk] = taken[junk_id]

    assert broken["body"] == broken_body
    assert broken["headers"]["x-stage"] == "conversation"
    assert broken["headers"]["x-routing-key"] == broken_cid
    assert "KeyError" in broken["headers"]["x-error"]
    assert "phone_number_id" in broken["headers"]["x-error"]
    assert broken["headers"]["x-attempts"] == max_attempts

    assert junk["body"] == junk_body
    assert junk["headers"]["x-stage"] == "conversation"
    assert junk["headers"]["x-routing-key"] == junk_cid
    assert junk["headers"]["x-error"].startswith("undecodable")
    # Retrying cannot make it decode: dead-lettered on its first attempt.
    assert junk["headers"]["x-attempts"] == 1

    # Never loops: once dead-lettered, neither comes back, however long we wait.
    time.sleep(4 * bot.stack.settings.retry_delay_ms / 1000)
    assert run.run_until_complete(_take_dead_letters(bot.amqp_url, {broken_id, junk_id})) == {}
    assert [t for t, _ in bot.events(f"conversation-{broken_cid}")] == [
        "TurnFailed",
        "CustomerWrote",
        "BotReplied",
    ]
