"""The customer ids (wa_id, business-scoped user id) that a business erased, kept as keyed
pseudonyms with a count (`erased_ids`, migration 0012).

A customer who writes again after an erasure gets the key `<id>~<epoch>` instead of `<id>`:
a new contact, a new conversation and new streams, under new data keys, so nothing joins
them to what was erased (whose streams are renamed and whose keys are destroyed). The
address Meta knows stays the id before the `~` (`address`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.crypto.datakeys import KeyRing

EPOCH = "~"


def address(customer: str) -> str:
    """The id Meta knows a customer by, from their key (which may carry an epoch)."""
    return customer.split(EPOCH, 1)[0]


def keyed(customer_id: str, epoch: int) -> str:
    return f"{customer_id}{EPOCH}{epoch}" if epoch else customer_id


def _pseudonyms(ring: KeyRing, business_id: str, ids: Iterable[str]) -> list[str]:
    return sorted({ring.pseudonym("erased", business_id, address(i)) for i in ids if i})


async def epoch(conn: Any, ring: KeyRing, business_id: str, ids: Iterable[str]) -> int:
    """How many times a customer known by any of these ids was erased (0: never)."""
    found = await conn.fetchval(
        "SELECT max(epoch) FROM erased_ids WHERE pseudonym = ANY($1::text[])",
        _pseudonyms(ring, business_id, ids),
    )
    return int(found or 0)


async def mark(conn: Any, ring: KeyRing, business_id: str, ids: Iterable[str]) -> int:
    """Record one more erasure of the customer known by these ids; returns the new epoch."""
    pseudonyms = _pseudonyms(ring, business_id, ids)
    new = await epoch(conn, ring, business_id, ids) + 1
    await conn.executemany(
        "INSERT INTO erased_ids (pseudonym, epoch) VALUES ($1, $2)"
        " ON CONFLICT (pseudonym) DO UPDATE SET epoch = GREATEST(erased_ids.epoch, $2)",
        [(p, new) for p in pseudonyms],
    )
    return new


async def current_key(conn: Any, business_id: str, customer_id: str) -> str:
    """The key a customer the business has no contact for gets (a send before they write):
    their id, with the epoch of an earlier erasure, as dedup will give it to them."""
    from shared.crypto import datakeys

    ring = datakeys.installed()
    if ring is None:
        return customer_id
    return keyed(customer_id, await epoch(conn, ring, business_id, [customer_id]))
