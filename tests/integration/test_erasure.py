"""Erasure over the real PostgreSQL store and read models: a customer's messages go in
through dedup (sealed with their keys), the api's read models, the relay's deliveries, a
kept API answer and a media file hold them; the erasure runs; then every table of the
database and every file of the media store is searched for the customer's number, name and
texts, and none is found. A redelivery from Meta of a message from before is dropped, and
the customer's next message starts a new contact."""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest
import pytest_asyncio

from services.api import erasure
from services.api.erasure import Eraser
from services.api.projections import rebuild, subscriptions
from services.dedup.handlers import deps_for, record_delivery
from shared.broker.bus import Context
from shared.broker.topology import DEAD_LETTERS, declare_dead_letters
from shared.config import Settings
from shared.crypto import datakeys
from shared.crypto import erased as erased_ids
from shared.crypto.datakeys import KeyRing
from shared.crypto.erased import customer_key
from shared.crypto.personal import PersonalCipher
from shared.crypto.secrets import SecretBox
from shared.directory import Directory
from shared.events.business import (
    CampaignAudience,
    CampaignDefined,
    ContactErased,
    campaign_command_stream,
    erasure_stream,
)
from shared.events.conversation import BotReplied, CustomerWrote, conversation_stream
from shared.events.dedup import MalformedDeliveryReceived, quarantine_stream
from shared.events.media import MediaStored, media_stream
from shared.eventstore import Erased, NewEvent, event_id_for, new
from shared.eventstore.mapper import install_cipher
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.subscription import CheckpointMoved
from shared.payloads import messages_payload, status_payload
from shared.schemas import CustomerMessage, StatusUpdate
from tests.integration.test_privacy_store import MASTER
from tests.unit.test_dedup_handlers import delivery, text

PNID = "100000000000001"


@pytest_asyncio.fixture(params=["sealed", "clear"])
async def ring(pg_pool: asyncpg.Pool, request: pytest.FixtureRequest) -> AsyncIterator[KeyRing]:
    """As the runtime installs it: with PRIVACY_ENCRYPTION on (sealed) and off (clear: keys
    made and checked, data in clear). An erasure must erase either way."""
    async with pg_pool.acquire() as conn:
        ring = await KeyRing(MASTER, ttl=0.2).start(conn)
    install_cipher(PersonalCipher(ring, seal=request.param == "sealed"))
    datakeys.install(ring)
    yield ring
    install_cipher(None)
    datakeys.install(None)


@pytest_asyncio.fixture
async def sealed_ring(pg_pool: asyncpg.Pool) -> AsyncIterator[KeyRing]:
    async with pg_pool.acquire() as conn:
        ring = await KeyRing(MASTER, ttl=0.2).start(conn)
    install_cipher(PersonalCipher(ring))
    datakeys.install(ring)
    yield ring
    install_cipher(None)
    datakeys.install(None)


async def finish(eraser: Eraser) -> None:
    """Step the eraser until no erasure is pending (its last phase waits for the settle)."""
    deadline = time.monotonic() + 30
    while await eraser.pool.fetchval("SELECT count(*) FROM erasures WHERE status = 'pending'"):
        assert time.monotonic() < deadline, "an erasure did not complete"
        if not await eraser.step():
            await asyncio.sleep(0.05)


def ctx() -> Context:
    return Context(uuid.uuid4().hex, uuid.uuid4().hex, 0, "k")


def dedup(pool: asyncpg.Pool, store: PostgresEventStore, ring: KeyRing):  # type: ignore[no-untyped-def]
    async def epochs(business_id: str, ids: list[str]) -> int:
        async with pool.acquire() as conn:
            return await erased_ids.epoch(conn, ring, business_id, ids)

    return deps_for(store, Directory(Settings(), None), epochs)


async def project(pool: asyncpg.Pool) -> None:
    """The read models, up to the last event appended. A row is read only once every older
    transaction of the server (other databases' too) has ended, so this may take a moment."""
    last = await pool.fetchval("SELECT max(global_position) FROM events")
    deadline = time.monotonic() + 30
    for sub in subscriptions(pool).values():
        while (await sub.position()).global_position < last:
            assert time.monotonic() < deadline, "the read models did not catch up"
            try:
                if not await sub.step():
                    await asyncio.sleep(0.05)
            except CheckpointMoved:
                continue  # the e2e stack's api stepped it first (the session's database)


async def campaign_with(pool: asyncpg.Pool, key: str, phone: str, name: str) -> tuple[str, str]:
    """A started campaign of the default business whose audience holds the customer (and one
    other person), as the api and the campaigns service record it. Paused by the business:
    the session's e2e stack shares this database, and its campaigns service would send a
    running one (its api may project these events too, hence the conflicts allowed)."""
    campaign, other = (
        f"cmp_{uuid.uuid4().hex[:12]}",
        "39" + "".join(random.choices("0123456789", k=10)),
    )
    store = PostgresEventStore(pool)
    audience = {"recipients": [{"to": phone, "variables": {"1": name}}, {"to": other}]}
    variants = [{"name": "hello", "language": "en"}]
    evaluated = [
        {"seq": 0, "to": key, "given": phone, "variant": 0, "message_id": "m0",
         "components": [{"type": "body", "parameters": [{"type": "text", "text": name}]}]},
        {"seq": 1, "to": "c-other", "given": other, "variant": 0, "message_id": "m1"},
    ]  # fmt: skip
    await store.append(
        campaign_command_stream(campaign),
        [
            new(CampaignDefined(
                campaign_id=campaign, business_id="default", name="spring",
                phone_number_id=PNID, variants=variants, audience=audience,
            )),
            new(CampaignAudience(
                campaign_id=campaign, business_id="default", part=0, recipients=evaluated
            )),
        ],
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO api_campaigns (campaign_id, business_id, name, phone_number_id, definition,"
        " created_at, updated_at, sort_position) VALUES ($1, 'default', 'spring', $2, $3, now(),"
        " now(), 1) ON CONFLICT DO NOTHING",
        campaign, PNID, {"audience": audience, "variants": variants},
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO campaign_runs (campaign_id, business_id, phone_number_id, state, paused_by,"
        " variants) VALUES ($1, 'default', $2, 'paused', 'business', $3)"
        " ON CONFLICT (campaign_id) DO UPDATE SET state = 'paused', paused_by = 'business'",
        campaign, PNID, variants,
    )  # fmt: skip
    for r in evaluated:
        await pool.execute(
            "INSERT INTO api_campaign_recipients (campaign_id, seq, customer, given, status)"
            " VALUES ($1, $2, $3, $4, 'queued') ON CONFLICT DO NOTHING",
            campaign, r["seq"], r["to"], r["given"],
        )  # fmt: skip
        await pool.execute(
            "INSERT INTO campaign_sends (campaign_id, seq, customer, address, components, state)"
            " VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT DO NOTHING",
            campaign, r["seq"], r["to"], r["given"], r.get("components"),
        )  # fmt: skip
    await pool.execute(
        "INSERT INTO campaign_reach (business_id, customer, reached_at) VALUES ('default', $1,"
        " now()) ON CONFLICT DO NOTHING",
        key,
    )
    return campaign, other


async def leaks(pool: asyncpg.Pool, needles: list[str]) -> list[str]:
    """Every (table, needle) where a needle appears in any row, as text or inside bytes."""
    found = []
    async with pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for table in (t["table_name"] for t in tables):
            binary = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = $1 AND data_type = 'bytea'",
                    table,
                )
            ]
            for needle in needles:
                clauses = ["strpos(t::text, $1) > 0"] + [
                    f"position(convert_to($1, 'UTF8') in t.\"{c}\") > 0" for c in binary
                ]
                if await conn.fetchval(
                    f'SELECT count(*) FROM "{table}" t WHERE ' + " OR ".join(clauses), needle
                ):
                    found.append(f"{table}: {needle}")
    return found


def files_with(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in content or n in str(path)]
    return hits


async def dead_letter(amqp_url: str, body: bytes) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange, _ = await declare_dead_letters(channel)
        await exchange.publish(aio_pika.Message(body, type="ConversationTurn"), routing_key="")


async def dead_letter_bodies(amqp_url: str) -> list[bytes]:
    """The dead letters' bodies, left in the queue (taken unacked, put back on close)."""
    connection = await aio_pika.connect(amqp_url)
    bodies = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(DEAD_LETTERS)
        while (message := await queue.get(fail=False, no_ack=False)) is not None:
            bodies.append(message.body)
    return bodies


async def test_erasure_leaves_nothing_and_a_new_message_starts_a_new_contact(
    pg_pool: asyncpg.Pool, ring: KeyRing, tmp_path: Path, amqp_url: str
) -> None:
    phone = "39" + "".join(random.choices("0123456789", k=10))
    name = f"Ottavia Brambilla {uuid.uuid4().hex[:6]}"
    said = f"my parcel {uuid.uuid4().hex[:8]} never arrived"
    caption = f"photo of the box {uuid.uuid4().hex[:8]}"
    reply = f"Sorry {name}, we are looking into it"
    store = PostgresEventStore(pg_pool)
    deps = dedup(pg_pool, store, ring)

    # The customer writes (through dedup, as Meta delivers it).
    first = text(phone, said)
    photo = {
        "from": phone,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"id": "m1", "mime_type": "image/jpeg", "sha256": "00", "caption": caption},
    }
    webhook = delivery(messages_payload([first, photo], phone, name=name))
    outputs = await record_delivery(deps, webhook, ctx())
    [m1, _] = [p.message for p in outputs if isinstance(p.message, CustomerMessage)]
    cid = m1.conversation_id
    key = customer_key("default", phone, 0, ring)
    assert cid == f"{PNID}.{key}" and phone not in cid  # named by a pseudonym
    # What the conversation and the media services record about it.
    await store.append(
        conversation_stream(cid),
        [
            NewEvent(
                CustomerWrote(
                    seq=0,
                    wamid=first["id"],
                    text=said,
                    customer_name=name,
                    customer=key,
                    address=phone,
                )
            ),
            NewEvent(BotReplied(seq=0, text=reply, command_id=uuid.uuid4().hex)),
        ],
    )
    media_root = tmp_path / "media"
    key = f"sha256/ab/ab{uuid.uuid4().hex}"
    (media_root / key).parent.mkdir(parents=True)
    (media_root / key).write_bytes(b"JPEG " + caption.encode())
    await store.append(
        media_stream(photo["id"]),
        [
            NewEvent(
                MediaStored(
                    conversation_id=cid, seq=1, wamid=photo["id"], kind="image",
                    caption=caption, sha256="ab", size=10, mime_type="image/jpeg",
                    store="local", store_key=key,
                )
            )
        ],
    )  # fmt: skip
    await project(pg_pool)
    contact_id = await pg_pool.fetchval(
        "SELECT contact_id FROM api_contacts WHERE wa_id = $1", phone
    )
    assert contact_id is not None
    # A CRM was sent the message; an API answer that named the customer was kept.
    await pg_pool.execute(
        "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type,"
        " order_key, event_txid, event_position, event_time, body, next_attempt_at)"
        " VALUES ($1, 'ep', $2, 'message.received', $3, 1, 1, now(), $4, now())",
        uuid.uuid4().hex, uuid.uuid4(), cid,
        f'{{"data": {{"conversation_id": "{cid}", "customer_name": "{name}", "text": "{said}"}}}}',
    )  # fmt: skip
    await pg_pool.execute(
        "INSERT INTO api_idempotency (principal, key, request_hash, status, body)"
        " VALUES ($1, $2, 'h', 201, $3)",
        uuid.uuid4().hex, uuid.uuid4().hex,
        f'{{"id": "{contact_id}", "wa_id": "{phone}"}}'.encode(),
    )  # fmt: skip
    needles = [phone, name, said, caption, reply]
    assert await leaks(pg_pool, needles)  # the scan finds what is there (in clear rows)

    # A dead letter about them (a message's body keeps their number and text), and one not.
    others = f'{{"conversation_id": "100.39{uuid.uuid4().hex[:10]}", "text": "not them"}}'
    await dead_letter(amqp_url, f'{{"from": "{phone}", "text": "{said}"}}'.encode())
    await dead_letter(amqp_url, others.encode())

    # A quarantined delivery about them (not JSON: kept in base64), and one about nobody.
    theirs_q, others_q = uuid.uuid4().hex, uuid.uuid4().hex
    for delivery_id, body in ((theirs_q, f"{{oops {phone} {said}"), (others_q, "{oops nobody")):
        malformed = MalformedDeliveryReceived(
            delivery_id=delivery_id, body_base64=base64.b64encode(body.encode()).decode()
        )
        await store.append(quarantine_stream(delivery_id), [new(malformed)])

    # The conversation's timers, which name it (and so the number) until they fire.
    await pg_pool.execute(
        "INSERT INTO conversation_bot_timers (conversation_id, deadline) VALUES ($1, 0)", cid
    )
    await pg_pool.execute(
        "INSERT INTO conversation_handback_timers (conversation_id, active_at, active_version)"
        " VALUES ($1, now(), 0)",
        cid,
    )

    # A campaign of the business had them in its audience (their number and a variable in
    # its definition, the evaluated audience and the campaigns' tables), beside someone else.
    campaign, other_phone = await campaign_with(pg_pool, key, phone, name)

    # The erasure, through its phases.
    settings = Settings(media_dir=str(media_root), amqp_url=amqp_url)
    eraser = Eraser(pg_pool, ring, SecretBox(MASTER), settings, settle_seconds=0.3)
    async with pg_pool.acquire() as conn:
        erasure_id = await erasure.request(conn, "default", contact_id, "test")
        assert await erasure.request(conn, "default", contact_id, "test") == erasure_id
    await finish(eraser)
    status = await pg_pool.fetchval("SELECT status FROM erasures WHERE erasure_id = $1", erasure_id)
    assert status == "done"

    assert await leaks(pg_pool, needles) == []
    assert files_with(media_root, needles) == []
    # The campaign kept the other recipient, and skips the erased one's pending send.
    sends = await pg_pool.fetch(
        "SELECT seq, customer, address, state FROM campaign_sends WHERE campaign_id = $1"
        " ORDER BY seq",
        campaign,
    )
    assert [(r["customer"], r["address"], r["state"]) for r in sends] == [
        ("erased", "", "skipped"),
        ("c-other", other_phone, "pending"),
    ]
    [defined] = await pg_pool.fetch(
        "SELECT data FROM events WHERE stream_name = $1 AND type = 'CampaignDefined'",
        f"campaigncmd-{campaign}",
    )
    assert [r["to"] for r in defined["data"]["audience"]["recipients"]] == [other_phone]
    [q_theirs] = await store.read_stream(quarantine_stream(theirs_q))
    [q_others] = await store.read_stream(quarantine_stream(others_q))
    assert isinstance(q_theirs.event, Erased)  # emptied
    assert isinstance(q_others.event, MalformedDeliveryReceived)  # kept
    left = await dead_letter_bodies(amqp_url)  # theirs dropped, another's kept
    assert others.encode() in left and not [b for b in left if phone.encode() in b]
    assert not (media_root / key).exists()
    [recorded] = await store.read_stream(erasure_stream(erasure_id))
    assert isinstance(recorded.event, ContactErased) and recorded.event.contact_id == contact_id
    # Readers meet the emptied rows as Erased: a fresh store (nothing cached) too.
    found = await store.find(event_id_for("message", first["id"]))
    assert found is not None and isinstance(found.event, Erased)
    await project(pg_pool)  # the read models pass them, and bring nothing back
    assert await leaks(pg_pool, needles) == []

    # Meta redelivers the first message (it retries for days): dropped, not re-recorded.
    again = await record_delivery(deps, webhook, ctx())
    assert [p for p in again if isinstance(p.message, CustomerMessage)] == []
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM events WHERE event_id = $1", event_id_for("message", first["id"])
        )
        == 1
    )
    # Their next message (the fence) starts a new contact with a new key and conversation.
    later = text(phone, "hello again")
    outputs = await record_delivery(
        deps, delivery(messages_payload([later], phone, name=name)), ctx()
    )
    [fresh] = [p.message for p in outputs if isinstance(p.message, CustomerMessage)]
    again_key = customer_key("default", phone, 1, ring)
    assert again_key != key
    assert fresh.conversation_id == f"{PNID}.{again_key}" and fresh.seq == 0
    await project(pg_pool)
    row = await pg_pool.fetchrow(
        "SELECT contact_id, customer FROM api_contacts WHERE wa_id = $1", phone
    )
    assert row["contact_id"] != contact_id and row["customer"] == again_key
    assert await leaks(pg_pool, [said, caption, reply]) == []
    # A status of a message sent to them now belongs to the new conversation (the old one's
    # key is destroyed: recorded there, it would be refused and the delivery dropped).
    statuses = await record_delivery(
        deps, delivery(status_payload(f"wamid.{uuid.uuid4().hex}", "delivered", phone)), ctx()
    )
    [update] = [p.message for p in statuses if isinstance(p.message, StatusUpdate)]
    assert update.conversation_id == f"{PNID}.{again_key}"


async def test_a_process_that_remembers_the_old_link_learns_of_the_erasure(
    pg_pool: asyncpg.Pool, ring: KeyRing, amqp_url: str
) -> None:
    """Dedup's memory of a customer's key is stale after their erasure: the write under it
    is refused (the key's tombstone), dedup forgets, and the message starts a new contact
    rather than being lost."""
    phone = "39" + "".join(random.choices("0123456789", k=10))
    store = PostgresEventStore(pg_pool)
    deps = dedup(pg_pool, store, ring)
    await record_delivery(deps, delivery(messages_payload([text(phone, "one")], phone)), ctx())
    await project(pg_pool)
    contact_id = await pg_pool.fetchval(
        "SELECT contact_id FROM api_contacts WHERE wa_id = $1", phone
    )
    eraser = Eraser(
        pg_pool, ring, SecretBox(MASTER), Settings(amqp_url=amqp_url), settle_seconds=0.3
    )
    async with pg_pool.acquire() as conn:
        await erasure.request(conn, "default", contact_id, "test")
    await finish(eraser)
    outputs = await record_delivery(
        deps, delivery(messages_payload([text(phone, "two")], phone)), ctx()
    )
    [message] = [p.message for p in outputs if isinstance(p.message, CustomerMessage)]
    assert message.conversation_id == f"{PNID}.{customer_key('default', phone, 1, ring)}"


async def test_retention_erases_contacts_silent_for_too_long(
    pg_pool: asyncpg.Pool, ring: KeyRing, amqp_url: str
) -> None:
    business = f"b{uuid.uuid4().hex[:8]}"
    old, recent = (f"ct_{uuid.uuid4().hex[:24]}" for _ in range(2))
    for contact, days in ((old, 40), (recent, 5)):
        await pg_pool.execute(
            "INSERT INTO api_contacts (contact_id, business_id, customer, first_seen_at,"
            " last_seen_at, sort_position) VALUES ($1, $2, $3, now() - make_interval(days => $4),"
            " now() - make_interval(days => $4), 1)",
            contact, business, uuid.uuid4().hex, days,
        )  # fmt: skip
    async with pg_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO privacy_settings (business_id, contacts_inactive_days) VALUES ($1, 30)",
            business,
        )
        assert await erasure.expire(conn, 0) == 1
        assert await erasure.expire(conn, 0) == 0  # asked once
        [row] = await conn.fetch(
            "SELECT erasure_id, contact_id, reason FROM erasures WHERE business_id = $1",
            business,
        )
    assert (row["contact_id"], row["reason"]) == (old, "retention")
    eraser = Eraser(
        pg_pool, ring, SecretBox(MASTER), Settings(amqp_url=amqp_url), settle_seconds=0.3
    )
    await finish(eraser)
    [recorded] = await PostgresEventStore(pg_pool).read_stream(erasure_stream(row["erasure_id"]))
    assert isinstance(recorded.event, ContactErased) and recorded.event.reason == "retention"
    left = await pg_pool.fetch(
        "SELECT contact_id FROM api_contacts WHERE business_id = $1", business
    )
    assert [r["contact_id"] for r in left] == [recent]


async def test_a_restored_older_backup_is_erased_again(
    pg_pool: asyncpg.Pool, sealed_ring: KeyRing
) -> None:
    """An older data backup restored beside the newest keys: the erased customer's rows come
    back sealed under destroyed keys, and their stream names with their number; the sweep
    empties and renames them, and the read models built from them show nothing."""
    phone = "39" + "".join(random.choices("0123456789", k=10))
    store = PostgresEventStore(pg_pool)
    deps = dedup(pg_pool, store, sealed_ring)
    await record_delivery(deps, delivery(messages_payload([text(phone, "before")], phone)), ctx())
    key = customer_key("default", phone, 0, sealed_ring)
    cid = f"{PNID}.{key}"
    backup = await pg_pool.fetch(
        "SELECT stream_name, stream_version, type, data, metadata FROM events"
        " WHERE stream_name = ANY($1::text[])",
        [f"inbox-{cid}", f"identity-default.{key}"],
    )
    assert len(backup) == 2
    await project(pg_pool)
    contact_id = await pg_pool.fetchval(
        "SELECT contact_id FROM api_contacts WHERE wa_id = $1", phone
    )
    eraser = Eraser(pg_pool, sealed_ring, SecretBox(MASTER), Settings(), settle_seconds=0.3)
    async with pg_pool.acquire() as conn:
        await erasure.request(conn, "default", contact_id, "test")
    await finish(eraser)
    # The restore: the old rows come back (as new rows: the erased ones keep their ids).
    for row in backup:
        await pg_pool.execute(
            "INSERT INTO events (stream_name, stream_version, event_id, type, data, metadata)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            row["stream_name"], row["stream_version"], uuid.uuid4(), row["type"],
            row["data"], row["metadata"],
        )  # fmt: skip
    # Sealed rows under pseudonymous names: the event store does not hold the number even
    # before the sweep (before keys were pseudonyms, the stream names brought it back). The
    # read models may: an api running meanwhile, with the key still in its cache, may have
    # projected the restored rows (the rebuild below is for that).
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM events WHERE strpos(stream_name, $1) > 0"
            " OR strpos(data::text, $1) > 0",
            phone,
        )
        == 0
    )
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_name = ANY($1::text[])",
            [f"inbox-{cid}", f"identity-default.{key}"],
        )
        == 2
    )  # the restored rows are there, under the names they had
    async with pg_pool.acquire() as conn:
        counts = await erasure.sweep_tombstones(conn)
    assert counts["events"] >= len(backup) and counts["streams_renamed"] >= 2
    # Then the read models are rebuilt, as `make restore` does: an api running meanwhile (the
    # session's e2e stack shares this database) may have projected the restored rows.
    await rebuild(pg_pool)
    assert await leaks(pg_pool, [phone]) == []
