"""The reads every new customer costs keep to their indexes however stale the planner's
statistics are.

A service's pooled connections prepare their statements when the tables are nearly empty,
and PostgreSQL keeps the generic plan it settles on after five executions until the table
is analysed again. Where autovacuum is off (this machine's server) or has not run yet (a
fresh deployment's first minutes), a plan made for a table of a few pages is still used
when it holds tens of thousands of rows: `stream_name = ANY($1)` became a scan of the whole
log for every new customer (the bench's burst of first contacts: 522 buffers a read at 30,000
events, against 12 by the index). Counted with the table's sequential-scan statistics.

The appends of every message (append_to_streams, migration 0037) are checked the same way.

The data keys' read (`key_id = ANY($1)`) did the same in the bench (customer_keys scanned
for every batch of keys), though this test does not make PostgreSQL choose that plan: its
half here checks that the probe form keeps to the primary key, not that the old one scanned.
"""

from __future__ import annotations

import asyncpg

from shared.crypto.datakeys import KeyRing
from shared.eventstore import NO_STREAM, NewEvent, StreamWrite, Unrecognised
from shared.eventstore.migrate import migrate
from shared.eventstore.postgres import PostgresEventStore, init_connection
from tests.integration.test_privacy_store import MASTER


async def seq_scans(conn: asyncpg.Connection, table: str) -> int:
    """The table's sequential scans so far, this connection's own included (flushed)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    return int(
        await conn.fetchval("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = $1", table)
    )


async def test_new_customers_reads_use_the_index_after_the_tables_grew_unanalysed(
    fresh_database_url: str,
) -> None:
    await migrate(fresh_database_url)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await init_connection(conn)
        # Statistics only from what the planner sees itself: nothing analyses meanwhile.
        await conn.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
        await conn.execute("ALTER TABLE customer_keys SET (autovacuum_enabled = false)")
        store = PostgresEventStore(conn=conn)
        for i in range(30):  # a stack just started: a few pages of events, a few keys
            await store.append(
                f"conversation-c{i}", [NewEvent(Unrecognised(type="Thing", data={"n": i}))]
            )
        ring = KeyRing(MASTER, ttl=0)
        await ring.start(conn)
        reads = 0

        async def read_as_a_new_customer_does() -> None:
            nonlocal reads
            reads += 1
            found = await store.read_streams(
                [f"identity-b.p{reads}", f"identity-b.w{reads}", "conversation-c1"]
            )
            assert [r.event.data["n"] for r in found["conversation-c1"]] == [1]
            assert found[f"identity-b.p{reads}"] == []
            # Appends as the services make them (append_to_streams: 0037's one insert).
            written = await store.append_batch(
                [
                    StreamWrite(f"inbox-n{reads}", [NewEvent(Unrecognised(type="T", data={}))]),
                    StreamWrite(
                        f"conversation-n{reads}",
                        [NewEvent(Unrecognised(type="T", data={})) for _ in range(2)],
                        NO_STREAM,
                    ),
                ]
            )
            assert [[a.stream_version for a in w] for w in written] == [[0], [0, 1]]
            await ring.load(conn, [f"key-a{reads}", f"key-b{reads}"])  # read only
            await ring.load(conn, [f"key-c{reads}", f"key-d{reads}"], create=True)
            async with conn.transaction():  # inside a transaction: insert, then read
                await ring.load(conn, [f"key-e{reads}"], create=True)

        for _ in range(8):  # past the five executions after which a generic plan is kept
            await read_as_a_new_customer_does()
        await conn.execute(
            "INSERT INTO events (stream_name, stream_version, event_id, type, data)"
            " SELECT 'identity-b.x' || g, 0, gen_random_uuid(), 'IdentityLinked',"
            " jsonb_build_object('pad', repeat('x', 300)) FROM generate_series(1, 30000) g"
        )
        await conn.execute(
            "INSERT INTO customer_keys (key_id, wrapped)"
            " SELECT 'key-x' || g, '\\x00' FROM generate_series(1, 20000) g"
        )
        events_before = await seq_scans(conn, "events")
        keys_before = await seq_scans(conn, "customer_keys")
        for _ in range(5):
            await read_as_a_new_customer_does()
        assert await seq_scans(conn, "events") == events_before
        assert await seq_scans(conn, "customer_keys") == keys_before
    finally:
        await conn.close()
