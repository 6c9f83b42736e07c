"""Poison messages: bounded attempts, then the dead-letters queue, and the conversation goes on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import msgspec

from shared.broker.cluster import connect_any
from shared.broker.topology import DEAD_LETTERS, stages
from shared.eventstore import NewEvent, Unrecognised, event_id_for
from shared.eventstore.postgres import PostgresEventStore, create_pool
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for

PHONE_NUMBER_ID = "100000000000001"


async def _publish(amqp_url: str, messages: list[tuple[str, str, bytes]]) -> None:
    """(message_id, routing key, body) straight onto the conversation stage's exchange."""
    connection = await connect_any(amqp_url)
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
    connection = await connect_any(amqp_url)
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
            [
                NewEvent(
                    Unrecognised(type="MessageReceived", data=data),
                    event_id_for("message", data["wamid"]),
                )
            ],
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
    broken_cid = bot.conversation_id(PHONE_NUMBER_ID, broken_customer)
    junk_cid = bot.conversation_id(PHONE_NUMBER_ID, junk_customer)

    # 1. A CustomerMessage whose event lacks phone_number_id, recorded that way in the inbox
    #    (as a bug might): it cannot be decoded, so retrying cannot help.
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
        {
            "type": "conversation.customer_message",
            "conversation_id": broken_cid,
            "seq": seq,
            "wamid": wamid,
            "event": broken_event,
        }
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

    wait_for(
        lambda: bot.metric("conversation", "dead_lettered_messages_total") >= dead_before + 2,
        timeout=30,
        message="both poison messages dead-lettered",
    )

    # 3. The next real message of each conversation is answered (a fence): the unreadable
    #    one before it is given up (TurnFailed) rather than holding it back.
    fences = bot.fences([broken_customer, junk_customer], timeout=20)
    for customer in (broken_customer, junk_customer):
        assert bot.graph.texts_to(customer) == [fences[customer]]
    [failed] = [d for t, d in bot.events(f"conversation-{broken_cid}") if t == "TurnFailed"]
    assert failed["seq"] == seq
    assert "unreadable inbox event" in failed["error"]

    # 4. Each poison message is in the dead letters once, with why, where and how often.
    taken: dict[str, list[Any]] = {}

    def both_taken() -> bool:
        for key, found in run.run_until_complete(
            _take_dead_letters(bot.amqp_url, {broken_id, junk_id})
        ).items():
            taken.setdefault(key, []).extend(found)
        return set(taken) == {broken_id, junk_id}

    wait_for(both_taken, timeout=20, interval=0.1, message="both poison messages dead-lettered")
    [broken] = taken[broken_id]
    [junk] = taken[junk_id]

    assert broken["body"] == broken_body
    assert broken["headers"]["x-stage"] == "conversation"
    assert broken["headers"]["x-routing-key"] == broken_cid
    assert broken["headers"]["x-error"].startswith("undecodable")
    assert "phone_number_id" in broken["headers"]["x-error"]
    # Retrying cannot make it decode: dead-lettered on its first attempt.
    assert broken["headers"]["x-attempts"] == 1

    assert junk["body"] == junk_body
    assert junk["headers"]["x-stage"] == "conversation"
    assert junk["headers"]["x-routing-key"] == junk_cid
    assert junk["headers"]["x-error"].startswith("undecodable")
    # Retrying cannot make it decode: dead-lettered on its first attempt.
    assert junk["headers"]["x-attempts"] == 1

    # Never loops: once dead-lettered, neither comes back. A copy coming back would wait in
    # the stage's retry queue or one of its queues, or be held by conversation, in the lane
    # of its routing key (each poison message's conversation). Fence those lanes again: every
    # copy delivered before the fences has been settled, and then nothing of the stage is
    # waiting anywhere, nothing of ours is in the dead letters, and nothing more was recorded.
    outcomes = outcome_counts(bot)
    fences = bot.fences([broken_customer, junk_customer], timeout=20)
    stage = stages(bot.stack.settings)["conversation"]
    depths = bot.queue_depths(*stage.queues, stage.retry_queue)
    assert depths == dict.fromkeys(depths, 0)
    assert run.run_until_complete(_take_dead_letters(bot.amqp_url, {broken_id, junk_id})) == {}
    assert bot.metric("conversation", "dead_lettered_messages_total") == dead_before + 2
    assert outcome_counts(bot) == outcomes
    for customer in (broken_customer, junk_customer):
        assert len(bot.graph.texts_to(customer)) == 2
    assert [t for t, _ in bot.events(f"conversation-{broken_cid}")] == [
        "TurnFailed",
        *["CustomerWrote", "BotReplied"] * 2,
    ]


def outcome_counts(bot: Running) -> dict[str, float]:
    """How often conversation has retried (in the lane) or dead-lettered a message."""
    return {
        "retried": bot.metric("conversation", "retries_total", kind="scheduled"),
        "dead_lettered": bot.metric(
            "conversation", "events_processed_total", outcome="dead_lettered"
        ),
    }
