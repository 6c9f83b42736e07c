"""A connection PostgreSQL left in the middle of an operation (it shut down under a
statement) is an outage the bus waits out in the message's lane, and is never handed out
again; as a plain failure the message would be retried off its lane and the customer's
next message recorded before it (a PostgreSQL restart reordered a customer's replies in CI
that way)."""

from __future__ import annotations

import asyncpg
import pytest

from shared.eventstore import StoreUnavailable
from shared.eventstore.postgres import connection


class LeftMidOperation:
    """What asyncpg's connection looks like then: open, and unusable."""

    def __init__(self) -> None:
        self.terminated = False

    def is_closed(self) -> bool:
        return self.terminated

    def terminate(self) -> None:
        self.terminated = True


async def test_a_connection_left_mid_operation_is_an_outage_and_is_not_reused() -> None:
    conn = LeftMidOperation()
    with pytest.raises(StoreUnavailable, match="another operation"):
        async with connection(None, conn):
            raise asyncpg.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
    assert conn.terminated


async def test_the_statements_own_errors_stay_what_they_are() -> None:
    conn = LeftMidOperation()
    with pytest.raises(asyncpg.UniqueViolationError):
        async with connection(None, conn):
            raise asyncpg.UniqueViolationError("duplicate key")
    assert not conn.terminated
