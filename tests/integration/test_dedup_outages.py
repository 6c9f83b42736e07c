"""Dedup's reads on a delivery's path with the database away are an outage (StoreUnavailable,
waited out in the delivery's lane), never a failure: a failure is retried off the lane, and
the customer's next message would be recorded, and answered, before it. A PostgreSQL
restart reordered a customer's replies in CI through the erasure epochs' read."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import asyncpg
import pytest

from services.dedup.__main__ import epochs_of
from shared.crypto import datakeys
from shared.crypto.datakeys import KeyRing
from shared.eventstore import StoreUnavailable
from tests.integration.test_privacy_store import MASTER


async def test_the_erasure_epochs_read_with_the_database_away_is_an_outage(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        ring = await KeyRing(MASTER, ttl=0.2).start(conn)
    datakeys.install(ring)
    with socket.socket() as probe:  # a port where nothing listens: the server gone
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        async with asyncpg.create_pool(
            f"postgresql://postgres@127.0.0.1:{port}/x", min_size=0
        ) as gone:
            epochs = epochs_of(SimpleNamespace(pool=gone))  # type: ignore[arg-type]
            with pytest.raises(StoreUnavailable):
                await epochs("business", ["15550001111"])
        # And with the database there, the same read answers (no erasure: epoch 0).
        assert await epochs_of(SimpleNamespace(pool=pg_pool))("b", ["1555"]) == 0  # type: ignore[arg-type]
    finally:
        datakeys.install(None)
