"""Customers from before pseudonyms, over the real store: after the upgrade they go on under
their old key (one customer, one conversation), and `ops migrate-pseudonyms` moves them to a
pseudonym: no stream name holds their number any more, every row about them names the new
key and is sealed under the new subject's key, their next message continues the same inbox,
and replies still go to their number."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio

from ops import pseudonyms
from services.conversation.domain import Conversation, evolve, recipient
from services.dedup.handlers import deps_for, record_delivery
from shared.crypto import datakeys
from shared.crypto.datakeys import KeyRing
from shared.crypto.erased import customer_key
from shared.crypto.personal import PersonalCipher, conversation_subject
from shared.directory import Number
from shared.events.business import (
    ContactUpdated,
    ConversationRead,
    contact_id_for,
    contact_stream,
    seen_stream,
)
from shared.events.conversation import BotReplied, CustomerWrote, conversation_stream
from shared.events.dedup import MessageReceived, StatusReceived
from shared.eventstore import NewEvent
from shared.eventstore.mapper import install_cipher
from shared.eventstore.postgres import PostgresEventStore
from shared.payloads import messages_payload, status_payload
from shared.schemas import CustomerMessage, StatusUpdate
from tests.integration.test_erasure import ctx
from tests.integration.test_privacy_store import MASTER
from tests.unit.test_dedup_handlers import bsuid_message, bsuid_payload, delivery, text


@dataclass
class OneNumber:
    """The directory as dedup needs it: one number, of one business."""

    phone_number_id: str
    business_id: str

    async def number(self, phone_number_id: str) -> Number | None:
        if phone_number_id != self.phone_number_id:
            return None
        return Number(phone_number_id=phone_number_id, business_id=self.business_id)

    def business_of_waba(self, waba_id: str) -> str | None:
        return self.business_id


@dataclass
class Legacy:
    business: str
    number: str
    phone: str
    wamid: str  # of a message sent to them, with a status


@pytest_asyncio.fixture
async def ring(pg_pool: asyncpg.Pool) -> AsyncIterator[KeyRing]:
    async with pg_pool.acquire() as conn:
        ring = await KeyRing(MASTER, ttl=0.2).start(conn)
    install_cipher(PersonalCipher(ring))
    yield ring
    install_cipher(None)
    datakeys.install(None)


def digits(n: int) -> str:
    return "".join(random.choices("0123456789", k=n))


def dedup(pool: asyncpg.Pool, found: Legacy):  # type: ignore[no-untyped-def]
    directory = OneNumber(found.number, found.business)
    return deps_for(PostgresEventStore(pool), directory)  # type: ignore[arg-type]


async def before_pseudonyms(pool: asyncpg.Pool) -> Legacy:
    """A customer as the version before pseudonyms recorded them: their rows sealed (the
    ring's cipher is on), their key their number (no ring installed for the key)."""
    assert datakeys.installed() is None
    legacy = Legacy(f"b{uuid.uuid4().hex[:8]}", "1" + digits(14), "39" + digits(10), "")
    legacy.wamid = f"wamid.{uuid.uuid4().hex}"
    deps = dedup(pool, legacy)
    payload = messages_payload([text(legacy.phone, "before")], legacy.phone, legacy.number)
    [sent] = await record_delivery(deps, delivery(payload), ctx())
    cid = f"{legacy.number}.{legacy.phone}"
    assert isinstance(sent.message, CustomerMessage) and sent.message.conversation_id == cid
    store = PostgresEventStore(pool)
    await store.append(
        conversation_stream(cid),
        [
            NewEvent(CustomerWrote(seq=0, wamid="w0", text="before", customer=legacy.phone)),
            NewEvent(BotReplied(seq=0, text="hello", command_id=uuid.uuid4().hex)),
        ],
    )
    status = status_payload(legacy.wamid, "delivered", legacy.phone, legacy.number)
    [update] = await record_delivery(deps, delivery(status), ctx())
    assert isinstance(update.message, StatusUpdate) and update.message.conversation_id == cid
    contact = contact_id_for(legacy.business, legacy.phone)
    await store.append(
        contact_stream(legacy.business, contact),
        [NewEvent(ContactUpdated(business_id=legacy.business, contact_id=contact, tags=["vip"]))],
    )
    await store.append(
        seen_stream(cid),
        [NewEvent(ConversationRead(business_id=legacy.business, conversation_id=cid))],
    )
    await pool.execute(
        "INSERT INTO conversation_handback_timers (conversation_id, active_at, active_version)"
        " VALUES ($1, now(), 0)",
        cid,
    )
    return legacy


async def named(pool: asyncpg.Pool, needle: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT stream_name FROM events WHERE strpos(stream_name, $1) > 0", needle
    )
    return sorted(r["stream_name"] for r in rows)


async def test_after_the_upgrade_a_customer_from_before_goes_on_under_their_old_key(
    pg_pool: asyncpg.Pool, ring: KeyRing
) -> None:
    legacy = await before_pseudonyms(pg_pool)
    datakeys.install(ring)  # the upgrade: keys are pseudonyms from now on
    deps = dedup(pg_pool, legacy)  # a fresh process: nothing remembered
    payload = messages_payload([text(legacy.phone, "after")], legacy.phone, legacy.number)
    [sent] = await record_delivery(deps, delivery(payload), ctx())
    assert isinstance(sent.message, CustomerMessage)
    # The same conversation, next in its order: not a second customer.
    assert sent.message.conversation_id == f"{legacy.number}.{legacy.phone}"
    assert sent.message.seq == 1


async def test_the_migration_moves_a_customer_from_before_onto_a_pseudonym(
    pg_pool: asyncpg.Pool, ring: KeyRing
) -> None:
    legacy = await before_pseudonyms(pg_pool)
    old_cid = f"{legacy.number}.{legacy.phone}"
    assert len(await named(pg_pool, legacy.phone)) == 4  # inbox, conversation, identity, seen

    datakeys.install(ring)
    # After the upgrade, before the migration: they write with a user id beside their
    # number, which is linked to their old key under the user id's pseudonym.
    user_id = f"BR.{uuid.uuid4().hex[:12]}"
    both = bsuid_payload(
        bsuid_message("with my username", user_id, legacy.phone), user_id, legacy.phone
    )
    both["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = legacy.number
    [sent] = await record_delivery(dedup(pg_pool, legacy), delivery(both), ctx())
    assert isinstance(sent.message, CustomerMessage) and sent.message.conversation_id == old_cid

    async def business_of(number: str) -> str | None:
        return legacy.business if number == legacy.number else None

    moved = await pseudonyms.migrate(pg_pool, ring, business_of, businesses=[legacy.business])
    assert (moved.customers, moved.skipped) == (1, [])

    key = customer_key(legacy.business, legacy.phone, 0, ring)
    cid = f"{legacy.number}.{key}"
    assert await named(pg_pool, legacy.phone) == []
    store = PostgresEventStore(pg_pool)
    [received, _] = [r.event for r in await store.read_stream(f"inbox-{cid}")]
    assert isinstance(received, MessageReceived)
    assert (received.conversation_id, received.customer, received.wa_id) == (
        cid,
        key,
        legacy.phone,
    )
    assert received.reply_to() == legacy.phone  # where replies go, kept beside the key
    assert [r.event for r in await store.read_stream(seen_stream(cid))] != []
    history = [r.event for r in await store.read_stream(conversation_stream(cid))]
    assert [type(e).__name__ for e in history] == ["CustomerWrote", "BotReplied"]
    wrote = history[0]
    assert isinstance(wrote, CustomerWrote)
    assert (wrote.customer, wrote.address) == (key, legacy.phone)  # where replies go, kept
    state = Conversation(cid)
    for event in history:
        evolve(state, event)
    assert recipient(state) == legacy.phone
    [status] = [r.event for r in await store.read_stream(f"message-{legacy.wamid}")]
    assert isinstance(status, StatusReceived) and status.conversation_id == cid
    contact = contact_id_for(legacy.business, key)
    [updated] = [r.event for r in await store.read_stream(contact_stream(legacy.business, contact))]
    assert isinstance(updated, ContactUpdated) and updated.contact_id == contact
    timers = await pg_pool.fetch(
        "SELECT conversation_id FROM conversation_handback_timers WHERE conversation_id = ANY($1)",
        [old_cid, cid],
    )
    assert [t["conversation_id"] for t in timers] == [cid]
    # Sealed under the new conversation's key (an erasure destroys it); the old one is gone.
    kept = await pg_pool.fetch(
        "SELECT DISTINCT data->>'_k' AS k FROM events WHERE stream_name = ANY($1::text[])",
        [f"inbox-{cid}", conversation_stream(cid), f"message-{legacy.wamid}"],
    )
    assert [r["k"] for r in kept] == [ring.key_id(conversation_subject(cid))]
    old_key = await pg_pool.fetchrow(
        "SELECT wrapped FROM customer_keys WHERE key_id = $1",
        ring.key_id(conversation_subject(old_cid)),
    )
    assert old_key is not None and old_key["wrapped"] is None

    # Their next message continues the same inbox, under the pseudonym, whichever id it
    # carries (the user id linked after the upgrade moved too), and replies go to their
    # number, as before.
    deps = dedup(pg_pool, legacy)
    payload = messages_payload([text(legacy.phone, "after")], legacy.phone, legacy.number)
    hidden = bsuid_payload(bsuid_message("hidden", user_id), user_id, None)
    hidden["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = legacy.number
    for body, seq in ((payload, 2), (hidden, 3)):
        [sent] = await record_delivery(deps, delivery(body), ctx())
        assert isinstance(sent.message, CustomerMessage)
        assert (sent.message.conversation_id, sent.message.seq) == (cid, seq)
        assert sent.message.event.reply_to() == legacy.phone

    # Run again: nobody is left to move.
    again = await pseudonyms.migrate(pg_pool, ring, business_of, businesses=[legacy.business])
    assert again.customers == 0
