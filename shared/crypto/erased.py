"""The customer ids (wa_id, business-scoped user id) that a business erased, kept as keyed
pseudonyms with a count (`erased_ids`, migration 0012).

A customer's key is a keyed pseudonym of their first id and the count of their erasures
(`customer_key`). One who writes again after an erasure gets a new key: a new contact, a new
conversation and new streams, under new data keys, so nothing joins them to what was erased
(whose streams are renamed and whose keys are destroyed). Without a key ring the key is the
id itself (`<id>~<epoch>` after an erasure); the address Meta knows is the id before the `~`
(`address`).
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
    """The key a customer had before keys were pseudonyms (and has without a key ring)."""
    return f"{customer_id}{EPOCH}{epoch}" if epoch else customer_id


PSEUDONYM = "c"  # a customer key's prefix: a pseudonym, never an id Meta gave


def customer_key(
    business_id: str, customer_id: str, epoch: int, ring: KeyRing | None = None
) -> str:
    """The key a customer known first by `customer_id` gets in this business: a keyed
    pseudonym (HMAC under the deployment's pseudonym key, per business, with the epoch of
    their erasures), so that no stream name, routing key or log line holds their number.
    Without a key ring (no MASTER_KEY) it is the id itself, with the epoch (`keyed`)."""
    from shared.crypto import datakeys

    ring = ring or datakeys.installed()
    if ring is None:
        return keyed(customer_id, epoch)
    return PSEUDONYM + ring.pseudonym("customer", business_id, customer_id, str(epoch))


def is_pseudonym(key: str) -> bool:
    return len(key) == 33 and key.startswith(PSEUDONYM) and not key.isdigit()


def sendable(to: str) -> str:
    """The id Meta knows in `to`, if it is one: a key from before pseudonyms was the id
    (maybe with an epoch); a pseudonym is none (the conversation knows where its replies
    go), and gives ""."""
    return "" if is_pseudonym(to) else address(to)


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
    found = await epoch(conn, ring, business_id, [customer_id])
    return customer_key(business_id, customer_id, found, ring)
