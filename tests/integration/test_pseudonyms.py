"""No phone number in names: with the deployment's key ring, a customer's key is a keyed
pseudonym, so the streams dedup writes, the conversation id it routes by (the broker's
consistent-hash key, and a dead letter's `x-routing-key`) and the identity links name
neither the number nor the user id; replies still go to the id Meta gave."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from services.conversation.domain import Conversation, Receive, decide, evolve
from services.conversation.outputs import outputs
from services.dedup.handlers import record_delivery
from shared.crypto import datakeys
from shared.crypto.datakeys import KeyRing
from shared.crypto.erased import customer_key, is_pseudonym
from shared.crypto.personal import PersonalCipher
from shared.events.conversation import BotReplied
from shared.eventstore.mapper import install_cipher
from shared.eventstore.postgres import PostgresEventStore
from shared.payloads import messages_payload
from shared.schemas import CustomerMessage, SendMessage
from tests.integration.test_erasure import PNID, ctx, dedup
from tests.integration.test_privacy_store import MASTER
from tests.unit.test_dedup_handlers import bsuid_message, bsuid_payload, delivery, text


@pytest_asyncio.fixture
async def ring(pg_pool: asyncpg.Pool) -> AsyncIterator[KeyRing]:
    async with pg_pool.acquire() as conn:
        ring = await KeyRing(MASTER).start(conn)
    install_cipher(PersonalCipher(ring))
    datakeys.install(ring)
    yield ring
    install_cipher(None)
    datakeys.install(None)


def number() -> str:
    return "39" + "".join(random.choices("0123456789", k=10))


def test_without_a_key_ring_the_key_is_the_id() -> None:
    """No MASTER_KEY: no pseudonym key either, and the key is the id, as it was."""
    assert customer_key("b1", "391234", 0) == "391234"
    assert customer_key("b1", "391234", 2) == "391234~2"


async def test_no_stream_or_routing_key_names_the_customer(
    pg_pool: asyncpg.Pool, ring: KeyRing
) -> None:
    store = PostgresEventStore(pg_pool)
    deps = dedup(pg_pool, store, ring)
    phone, user_id = number(), f"BR.{uuid.uuid4().hex[:12]}"
    published = await record_delivery(
        deps, delivery(messages_payload([text(phone, "hello")], phone)), ctx()
    )
    hiding = bsuid_message("hi", user_id)  # a customer who hides their number
    published += await record_delivery(deps, delivery(bsuid_payload(hiding, user_id, None)), ctx())
    sent = [p for p in published if isinstance(p.message, CustomerMessage)]
    assert len(sent) == 2
    keys = [p.message.conversation_id.split(".", 1)[1] for p in sent]
    assert keys == [
        customer_key("default", phone, 0, ring),
        customer_key("default", user_id, 0, ring),
    ]
    assert all(is_pseudonym(k) for k in keys)
    assert keys[0] != customer_key("other-business", phone, 0, ring)  # per business
    assert keys[0] != customer_key("default", phone, 1, ring)  # and per erasure epoch
    for p in sent:  # the routing key, which a dead letter keeps as x-routing-key
        assert phone not in p.key and user_id not in p.key
    named = await pg_pool.fetch(
        "SELECT stream_name FROM events WHERE strpos(stream_name, $1) > 0"
        " OR strpos(stream_name, $2) > 0",
        phone,
        user_id,
    )
    assert named == []
    written = await pg_pool.fetch(
        "SELECT DISTINCT stream_name FROM events WHERE stream_name = ANY($1::text[])",
        [f"inbox-{PNID}.{keys[0]}", f"identity-default.{keys[0]}"],
    )
    assert len(written) == 2  # the streams are there, under the pseudonym

    # The conversation replies to the id Meta gave, not to the key that names it.
    for p, to in zip(sent, (phone, user_id), strict=True):
        message = p.message
        assert isinstance(message, CustomerMessage)
        state = Conversation(message.conversation_id)
        for event in decide(state, Receive(message.seq, message.event, "customer:0", False)):
            evolve(state, event)
        assert state.customer == message.event.customer and state.address == to
        reply = BotReplied(seq=message.seq, text="hi", command_id=uuid.uuid4().hex)
        [send] = [o.message for o in outputs(evolve(state, reply), reply)]
        assert isinstance(send, SendMessage) and send.to == to
        assert send.conversation_id == message.conversation_id
