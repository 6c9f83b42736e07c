"""Customers' data sealed in the real PostgreSQL event store with their own keys, and
crypto-shredding: a destroyed key leaves rows that read as Erased, never a crash."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import events
from shared.crypto.datakeys import KeyRing, _outside_transaction
from shared.crypto.personal import ErasedData, PersonalCipher, conversation_subject, stream_subject
from shared.crypto.secrets import MasterKey, SecretError, new_master_key
from shared.events.business import BusinessCreated, business_stream
from shared.events.conversation import CustomerWrote, conversation_stream
from shared.events.dedup import IdentityLinked, MessageReceived, identity_stream, inbox_stream
from shared.eventstore import Erased, NewEvent, RecordedEvent, event_id_for
from shared.eventstore.mapper import Mapper, install_cipher
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.subscription import Batch, Subscription
from tests.support.keys import SESSION_MASTER_KEY

PHONE = "393331234567"
NAME = "Giulia Verdi"
TEXT = "my order 4471 never came"


@pytest_asyncio.fixture
async def ring(pg_pool: asyncpg.Pool) -> AsyncIterator[KeyRing]:
    """A deployment's ring, installed as the services install it. The pseudonym key is the
    database's: every test of the session shares it, as every process of a deployment."""
    async with pg_pool.acquire() as conn:
        ring = await KeyRing(MASTER).start(conn)
    install_cipher(PersonalCipher(ring))
    yield ring
    install_cipher(None)


# The session's deployment: one master key for every test that seals (the database's
# pseudonym key and data keys are wrapped by it).
MASTER = MasterKey(SESSION_MASTER_KEY)  # the session database's pseudonym key is under it


async def other_process(pool: asyncpg.Pool, master: MasterKey = MASTER) -> PostgresEventStore:
    """A store as another process has it: its own ring, nothing cached."""
    async with pool.acquire() as conn:
        ring = await KeyRing(master).start(conn)
    return PostgresEventStore(
        pool, mapper=Mapper(events.ALL, events.UPCASTERS, PersonalCipher(ring))
    )


def message(cid: str, wamid: str) -> MessageReceived:
    return MessageReceived(
        conversation_id=cid,
        business_id="biz",
        phone_number_id=cid.split(".")[0],
        customer=PHONE,
        wa_id=PHONE,
        customer_name=NAME,
        wamid=wamid,
        type="text",
        message={"from": PHONE, "id": wamid, "text": {"body": TEXT}},
        contact={"profile": {"name": NAME}, "wa_id": PHONE},
    )


async def raw_rows(pool: asyncpg.Pool, stream: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT data::text AS data FROM events WHERE stream_name = $1 ORDER BY stream_version",
        stream,
    )
    return [r["data"] for r in rows]


async def test_personal_events_are_sealed_and_read_back(pg_pool: asyncpg.Pool, ring: KeyRing):
    store = PostgresEventStore(pg_pool)
    cid = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    wamid = f"wamid.{uuid.uuid4().hex}"
    await store.append(inbox_stream(cid), [NewEvent(message(cid, wamid))])
    await store.append(
        conversation_stream(cid),
        [NewEvent(CustomerWrote(seq=0, wamid=wamid, text=TEXT, customer_name=NAME))],
    )
    business = f"b{uuid.uuid4().hex[:8]}"
    await store.append(
        business_stream(business), [NewEvent(BusinessCreated(business_id=business, name="Shop"))]
    )

    for stream in (inbox_stream(cid), conversation_stream(cid)):
        [data] = await raw_rows(pg_pool, stream)
        for secret in (PHONE, NAME, TEXT, wamid):
            assert secret not in data
    [clear] = await raw_rows(pg_pool, business_stream(business))
    assert "Shop" in clear  # nothing personal: not sealed

    [inbox] = await store.read_stream(inbox_stream(cid))
    assert inbox.event == message(cid, wamid)
    [said] = await store.read_stream(conversation_stream(cid))
    assert isinstance(said.event, CustomerWrote) and said.event.text == TEXT
    # One key for the conversation's streams, kept wrapped, named by a pseudonym.
    rows = await pg_pool.fetch(
        "SELECT key_id, wrapped FROM customer_keys WHERE key_id = $1",
        ring.key_id(conversation_subject(cid)),
    )
    assert len(rows) == 1 and PHONE.encode() not in bytes(rows[0]["wrapped"])
    assert PHONE not in rows[0]["key_id"]


async def test_a_second_process_reads_with_its_own_ring(pg_pool: asyncpg.Pool, ring: KeyRing):
    """Keys come from the table, not from the writer's memory: another process (another
    ring over the same master key) reads the rows; another master key cannot."""
    store = PostgresEventStore(pg_pool)
    cid = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    await store.append(inbox_stream(cid), [NewEvent(message(cid, "wamid.x" + cid))])
    other = await other_process(pg_pool)
    [read] = await other.read_stream(inbox_stream(cid))
    assert isinstance(read.event, MessageReceived) and read.event.customer_name == NAME
    with pytest.raises(SecretError):
        await other_process(pg_pool, MasterKey(new_master_key()))


async def test_a_shredded_key_reads_as_erased(pg_pool: asyncpg.Pool, ring: KeyRing):
    store = PostgresEventStore(pg_pool)
    cid = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    wamid = f"wamid.{uuid.uuid4().hex}"
    message_id = event_id_for("message", wamid)
    await store.append(inbox_stream(cid), [NewEvent(message(cid, wamid), message_id)])
    async with pg_pool.acquire() as conn:
        assert await ring.shred(conn, [ring.key_id(conversation_subject(cid))]) == 1
    # This process and a fresh one (nothing cached) both see the row as Erased.
    [mine] = await store.read_stream(inbox_stream(cid))
    assert isinstance(mine.event, Erased) and mine.event.data == {}
    fresh = await other_process(pg_pool)
    [theirs] = await fresh.read_stream(inbox_stream(cid))
    assert isinstance(theirs.event, Erased)
    found = await fresh.find(message_id)
    assert found is not None and isinstance(found.event, Erased)
    # Nothing is sealed for an erased subject again (no new key is made): the write is
    # refused, and the consumer runtime drops the work.
    with pytest.raises(ErasedData):
        await fresh.append(inbox_stream(cid), [NewEvent(message(cid, wamid), message_id)])
    async with pg_pool.acquire() as conn:
        assert await ring.shred(conn, [ring.key_id(conversation_subject(cid))]) == 0
        row = await conn.fetchrow(
            "SELECT wrapped FROM customer_keys WHERE key_id = $1",
            ring.key_id(conversation_subject(cid)),
        )
    assert row["wrapped"] is None


async def test_a_subscription_passes_erased_rows(pg_pool: asyncpg.Pool, ring: KeyRing):
    """A reader of the whole log meets erased rows and moves on: never stalls on them."""
    store = PostgresEventStore(pg_pool)
    cid = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    await store.append(inbox_stream(cid), [NewEvent(message(cid, "wamid.a" + cid))])
    async with pg_pool.acquire() as conn:
        await ring.shred(conn, [ring.key_id(conversation_subject(cid))])
    fence = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    await store.append(inbox_stream(fence), [NewEvent(message(fence, "wamid.b" + fence))])
    seen: list[RecordedEvent] = []

    async def handle(batch: Batch) -> None:
        seen.extend(batch.events)

    sub = Subscription(f"privacy-{uuid.uuid4().hex[:6]}", handle, pg_pool, category="inbox")
    deadline = time.monotonic() + 30  # rows wait for every older transaction of the server
    while inbox_stream(fence) not in [e.stream for e in seen]:  # the fence is reached
        assert time.monotonic() < deadline
        if not await sub.step():
            await asyncio.sleep(0.05)
    erased = [e for e in seen if e.stream == inbox_stream(cid)]
    assert len(erased) == 1 and isinstance(erased[0].event, Erased)


async def test_identity_streams_have_their_own_key(pg_pool: asyncpg.Pool, ring: KeyRing):
    store = PostgresEventStore(pg_pool)
    business = f"b{uuid.uuid4().hex[:8]}"
    stream = identity_stream(business, PHONE)
    link = IdentityLinked(business_id=business, id=PHONE, customer=PHONE, kind="wa_id")
    await store.append(stream, [NewEvent(link)])
    [data] = await raw_rows(pg_pool, stream)
    assert PHONE not in data
    async with pg_pool.acquire() as conn:
        assert await ring.shred(conn, [ring.key_id(stream_subject(stream))]) == 1
    [read] = await store.read_stream(stream)
    assert isinstance(read.event, Erased)


async def test_rotation_rewraps_keys_not_data(pg_pool: asyncpg.Pool, ring: KeyRing):
    store = PostgresEventStore(pg_pool)
    cid = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    await store.append(inbox_stream(cid), [NewEvent(message(cid, "wamid.r" + cid))])
    before = await raw_rows(pg_pool, inbox_stream(cid))
    new_master = MasterKey(new_master_key())
    async with pg_pool.acquire() as conn:
        assert await KeyRing(new_master).rewrap(conn, KeyRing(MASTER)) >= 1
        assert await KeyRing(new_master).rewrap(conn, KeyRing(MASTER)) == 0  # idempotent
    assert await raw_rows(pg_pool, inbox_stream(cid)) == before  # the data untouched
    reader = await other_process(pg_pool, new_master)
    assert reader.mapper.cipher.ring.key_id("x") == ring.key_id("x")  # pseudonyms kept
    [read] = await reader.read_stream(inbox_stream(cid))
    assert isinstance(read.event, MessageReceived) and read.event.wa_id == PHONE
    async with pg_pool.acquire() as conn:  # and back, for the session's other tests
        assert await KeyRing(MASTER).rewrap(conn, KeyRing(new_master)) >= 1


class Clock:
    """The key ring's monotonic clock, moved by the test (freshness is a matter of time)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


async def sealed_subject(pg_pool: asyncpg.Pool, ring: KeyRing) -> str:
    """The key id of a new conversation with a sealed row."""
    store = PostgresEventStore(pg_pool)
    cid = f"{uuid.uuid4().hex[:8]}.{PHONE}"
    await store.append(inbox_stream(cid), [NewEvent(message(cid, "wamid.s" + cid))])
    return ring.key_id(conversation_subject(cid))


@pytest_asyncio.fixture
async def reader(pg_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> tuple[KeyRing, Clock]:
    """Another process's ring on a clock of the test's, swept as a service sweeps it."""
    clock = Clock()
    monkeypatch.setattr("shared.crypto.datakeys.time", clock)
    async with pg_pool.acquire() as conn:
        other = await KeyRing(MASTER, ttl=5.0).start(conn)
    return other, clock


async def test_a_sweep_learns_of_keys_destroyed_elsewhere(
    pg_pool: asyncpg.Pool, ring: KeyRing, reader: tuple[KeyRing, Clock]
):
    other, clock = reader
    key_id = await sealed_subject(pg_pool, ring)
    async with pg_pool.acquire() as conn:
        assert await other.sweep(conn) == 0  # the first one takes its place
        clock.now += 1
        await other.load(conn, [key_id])
        assert other.cached(key_id) is not None
        # Destroyed by another process, in a transaction still open at the next sweep:
        # that sweep cannot see it, the one after must.
        async with pg_pool.acquire() as eraser, eraser.transaction():
            assert await ring.shred(eraser, [key_id]) == 1
            clock.now += 1
            assert await other.sweep(conn) == 0
            assert other.cached(key_id) is not None
        clock.now += 1
        assert await other.sweep(conn) == 1
        assert other.cached(key_id) is None and other.is_fresh(key_id)
        assert await other.sweep(conn) == 0  # learnt once


async def test_a_sweep_vouches_only_for_keys_read_after_the_first(
    pg_pool: asyncpg.Pool, ring: KeyRing, reader: tuple[KeyRing, Clock]
):
    other, clock = reader
    early = await sealed_subject(pg_pool, ring)
    late = await sealed_subject(pg_pool, ring)
    async with pg_pool.acquire() as conn:
        await other.load(conn, [early])
        clock.now += 1
        await other.sweep(conn)
        clock.now += 1
        await other.load(conn, [late])
        clock.now += 10  # past both keys' own ttl
        assert not other.is_fresh(early) and not other.is_fresh(late)
        await other.sweep(conn)
        # The sweeps since `late` was read looked at everything destroyed after its read;
        # `early` was read before the first sweep, which looked at nothing.
        assert other.is_fresh(late) and not other.is_fresh(early)
        clock.now += 10  # no sweep since: nothing is vouched for any more
        assert not other.is_fresh(late)


async def test_a_read_answered_after_the_sweep_does_not_bring_a_destroyed_key_back(
    pg_pool: asyncpg.Pool, ring: KeyRing, reader: tuple[KeyRing, Clock]
):
    other, clock = reader
    key_id = await sealed_subject(pg_pool, ring)
    async with pg_pool.acquire() as conn:
        await other.sweep(conn)
        # A read of the key is on its way (its snapshot saw the key) when the key is
        # destroyed and a sweep learns of it.
        [row] = await conn.fetch("SELECT wrapped FROM customer_keys WHERE key_id = $1", key_id)
        assert await ring.shred(conn, [key_id]) == 1
        clock.now += 1
        await other.sweep(conn)
    late = AESGCM(other.unwrap(bytes(row["wrapped"]), key_id))
    other._keep(key_id, late, read_at=clock.now - 2)  # the read's answer arrives now
    assert other.cached(key_id) is None and other.is_fresh(key_id)


async def test_a_sweep_that_finds_the_ids_gone_back_vouches_for_nothing_read_before(
    pg_pool: asyncpg.Pool, ring: KeyRing, reader: tuple[KeyRing, Clock]
):
    """A fail-over to a replica that was behind, or a restore: transaction ids below the last
    sweep's may be handed out again, and erasures under them would not be found."""
    other, clock = reader
    key_id = await sealed_subject(pg_pool, ring)
    async with pg_pool.acquire() as conn:
        await other.sweep(conn)
        clock.now += 1
        await other.load(conn, [key_id])
        clock.now += 10
        await other.sweep(conn)
        assert other.is_fresh(key_id)  # vouched for
        other._sweep_xmin = 2**62  # as the old server's ids were ahead of this one's
        assert await other.sweep(conn) == 0
        assert not other.is_fresh(key_id)
        clock.now += 1
        await other.load(conn, [key_id])  # read again, after the new start
        clock.now += 10
        await other.sweep(conn)
        assert other.is_fresh(key_id)


async def test_a_key_destroyed_by_any_writer_is_found_by_the_sweeps(
    pg_pool: asyncpg.Pool, ring: KeyRing, reader: tuple[KeyRing, Clock]
):
    """The table marks the destroying transaction itself (a process of an older version,
    during a rolling upgrade, sets only `wrapped` to NULL)."""
    other, clock = reader
    key_id = await sealed_subject(pg_pool, ring)
    async with pg_pool.acquire() as conn:
        await other.sweep(conn)
        clock.now += 1
        await other.load(conn, [key_id])
        await conn.execute("UPDATE customer_keys SET wrapped = NULL WHERE key_id = $1", key_id)
        clock.now += 1
        assert await other.sweep(conn) == 1
        assert other.cached(key_id) is None


async def test_keys_made_at_once_by_two_processes_are_one_key_committed_lazily_alone(
    pg_pool: asyncpg.Pool, ring: KeyRing
):
    """Two processes meeting a new customer at once make one key between them (the first
    writer wins, the other reads its key), in one round trip each whose commit does not
    wait for the WAL flush; the setting ends with it, so the pooled connection's next
    transaction, and any transaction a key is made inside, still commit durably."""
    async with pg_pool.acquire() as conn:
        other = await KeyRing(MASTER).start(conn)
    key_ids = [ring.key_id(f"race-{uuid.uuid4().hex}") for _ in range(3)]
    async with pg_pool.acquire() as a, pg_pool.acquire() as b:
        assert _outside_transaction(a) and _outside_transaction(b)  # the lazy path's test
        await asyncio.gather(
            ring.load(a, key_ids, create=True), other.load(b, reversed(key_ids), create=True)
        )
        for conn in (a, b):
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
    for key_id in key_ids:
        mine, theirs = ring.cached(key_id), other.cached(key_id)
        assert mine is not None and theirs is not None
        sealed = mine.encrypt(b"\0" * 12, b"hello", None)
        assert theirs.decrypt(b"\0" * 12, sealed, None) == b"hello"
    async with pg_pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM customer_keys WHERE key_id = ANY($1::text[])", key_ids
            )
            == 3
        )
        # Made inside a transaction: that transaction's commit stays synchronous.
        inside = ring.key_id(f"inside-{uuid.uuid4().hex}")
        async with conn.transaction():
            await ring.load(conn, [inside], create=True)
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert ring.cached(inside) is not None
        # A destroyed key is not made again by the lazy path either.
        await ring.shred(conn, [key_ids[0]])
    async with pg_pool.acquire() as conn:
        late = await KeyRing(MASTER).start(conn)
        await late.load(conn, key_ids, create=True)
    assert late.cached(key_ids[0]) is None and late.cached(key_ids[1]) is not None
