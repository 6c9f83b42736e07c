"""Customers from before pseudonyms, moved onto them: `python -m ops migrate-pseudonyms`.

A customer linked before customer keys were keyed pseudonyms keeps the key their first id
gave them: their number (`<id>~<n>` after erasures). That key names their streams
(`inbox-`, `conversation-`, `identity-`), their conversation ids (the broker's routing keys)
and, hashed, their contact id. Dedup still finds them under it after the upgrade, so they go
on as one customer; this migration moves each of them to the key a new customer gets
(`shared.crypto.erased.customer_key`), in one transaction per customer:

- their streams renamed (the contact's and its access log's too: the contact id is derived
  from the key);
- every row about them rewritten: the key, the conversation ids and the contact id in the
  data replaced, the address replies go to kept beside them (rows from before it was kept),
  and the row sealed again under the data key of its new subject, so that an erasure (which
  destroys the keys of the subjects it names) reaches it;
- the campaigns' and timers' rows that name them updated; their old data keys destroyed
  (nothing is sealed under them any more).

Then the read models are rebuilt. Versioned by its own effect: a customer moved has no
stream under an old name, so running it again moves only who is left (after a crash, too).
Run it with the services stopped (`make down`; it refuses while one is connected), then
`make up`: messages in flight name the old ids.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from shared.crypto.datakeys import KeyRing
from shared.crypto.erased import EPOCH, address, customer_key, is_pseudonym, keyed
from shared.crypto.personal import (
    ERASED_KEY,
    ErasedData,
    PersonalCipher,
    conversation_subject,
    key_id_of,
    stream_subject,
)
from shared.events import conversation as conversation_events
from shared.events.business import contact_id_for
from shared.eventstore import Event

log = logging.getLogger("ops.pseudonyms")

BusinessOf = Callable[[str], Awaitable[str | None]]  # a phone number id's business

# Rows that carry where replies go beside the key since keys are pseudonyms: a row from
# before has none, and its key was that id.
_ADDRESS_FIELD = {
    cls.__name__: "address"
    for cls in vars(conversation_events).values()
    if isinstance(cls, type)
    and issubclass(cls, Event)
    and "address" in getattr(cls, "__struct_fields__", ())
}
_ADDRESS_FIELD |= {
    "IdentityLinked": "address",
    "MessageReceived": "address",
    "BusinessWrote": "to",
    "MessageRequested": "address",
    "ContactCreated": "wa_id",
}


@dataclass
class Legacy:
    """One customer under a key from before pseudonyms."""

    business_id: str
    key: str
    ids: set[str] = field(default_factory=set)  # every id linked to the key
    conversations: set[str] = field(default_factory=set)
    # Identity streams under a pseudonym already that link an id to the old key (an id first
    # seen beside it after the upgrade): rewritten where they are.
    linked: set[str] = field(default_factory=set)

    @property
    def epoch(self) -> int:
        _, sep, n = self.key.partition(EPOCH)
        return int(n) if sep and n.isdigit() else 0

    def new_key(self, ring: KeyRing) -> str:
        return customer_key(self.business_id, address(self.key), self.epoch, ring)


@dataclass
class Moved:
    customers: int = 0
    rows: int = 0  # rewritten
    renamed: int = 0  # rows whose stream was renamed
    skipped: list[str] = field(default_factory=list)  # why a customer was left as it was


def _legacy(key: str) -> bool:
    return bool(key) and not is_pseudonym(key)


async def find(
    conn: asyncpg.Connection,
    cipher: PersonalCipher,
    business_of: BusinessOf,
    businesses: Iterable[str] | None = None,
) -> list[Legacy]:
    """Every customer whose key is not a pseudonym, from the event store's names (and the
    contacts made through the API before the customer wrote, whose stream names a hash):
    `businesses` limits it to those."""
    only = set(businesses) if businesses is not None else None
    found: dict[tuple[str, str], Legacy] = {}

    def customer(business: str, key: str) -> Legacy | None:
        # "": a number no business owns (its items are recorded, never answered).
        if business == "erased" or (only is not None and business not in only):
            return None
        return found.setdefault((business, key), Legacy(business, key))

    names = await conn.fetch(
        "SELECT DISTINCT stream_name FROM events"
        " WHERE split_part(stream_name, '-', 1) = ANY($1::text[])",
        ["inbox", "conversation", "identity", "contact"],
    )
    numbers: dict[str, str | None] = {}
    for (name,) in names:
        category, _, rest = name.partition("-")
        head, dot, tail = rest.partition(".")
        if not dot or head == "erased":
            continue  # a stream an erasure renamed
        if category in ("inbox", "conversation"):
            if not _legacy(tail):
                continue
            if head not in numbers:
                numbers[head] = await business_of(head)
            legacy = customer(numbers[head] or "", tail)
            if legacy is not None:
                legacy.conversations.add(rest)
        elif category == "identity" and head and (only is None or head in only):
            # Every identity stream: one under a pseudonym may still link to an old key.
            for row in await _rows(conn, cipher, "stream_name = $1", name):
                if row.type == "IdentityLinked" and _legacy(str(row.data.get("customer"))):
                    legacy = customer(head, str(row.data["customer"]))
                    if legacy is not None:
                        legacy.ids.add(str(row.data.get("id")))
                        if not _legacy(tail):
                            legacy.linked.add(name)
        elif category == "contact" and head and (only is None or head in only):
            for row in await _rows(conn, cipher, "stream_name = $1", name):
                if row.type == "ContactCreated" and _legacy(str(row.data.get("customer"))):
                    customer(head, str(row.data["customer"]))
    return sorted(found.values(), key=lambda c: (c.business_id, c.key))


@dataclass
class _Row:
    position: int
    stream: str
    type: str
    data: dict[str, Any]  # opened


async def _rows(
    conn: asyncpg.Connection, cipher: PersonalCipher, where: str, *args: Any
) -> list[_Row]:
    """The rows matching `where`, opened (an erased row, whose key is gone, is left out)."""
    found = await conn.fetch(
        "SELECT global_position, stream_name, type, data FROM events WHERE "
        + where
        + " ORDER BY global_position",
        *args,
    )
    stored = [(r, _json(r["data"])) for r in found]
    keys = {k for _, d in stored if (k := key_id_of(d)) and k != ERASED_KEY}
    await cipher.load(conn, keys, False)
    opened = []
    for r, data in stored:
        try:
            plain = cipher.decrypt(r["stream_name"], r["type"], data)
        except ErasedData:
            continue
        opened.append(_Row(r["global_position"], r["stream_name"], r["type"], plain))
    return opened


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else msgspec.json.decode(value)


def _rewrite(row: _Row, values: dict[str, dict[str, str]], old_key: str) -> dict[str, Any]:
    """The row's data under the new names; where replies go kept beside the key."""
    data = dict(row.data)
    for name, changes in values.items():
        value = data.get(name)
        if isinstance(value, str) and value in changes:
            data[name] = changes[value]
    if row.type == "MessageRequested" and data.get("to") == old_key:
        data["to"] = values["customer"][old_key]  # its `to` is the key (`address` the id)
    where = _ADDRESS_FIELD.get(row.type)
    if where and not data.get(where):
        data[where] = address(old_key)
    return data


async def move(
    conn: asyncpg.Connection, ring: KeyRing, cipher: PersonalCipher, legacy: Legacy
) -> tuple[int, int]:
    """Move one customer (in the caller's transaction); returns (rows, streams) moved."""
    business, old = legacy.business_id, legacy.key
    new = legacy.new_key(ring)
    epoch = legacy.epoch
    old_contact, new_contact = contact_id_for(business, old), contact_id_for(business, new)
    renames: dict[str, str] = {}
    conversations: dict[str, str] = {}
    for cid in sorted(legacy.conversations):
        number = cid.partition(".")[0]
        conversations[cid] = f"{number}.{new}"
        for category in ("inbox", "conversation", "seen"):
            renames[f"{category}-{cid}"] = f"{category}-{number}.{new}"
    for the_id in sorted(legacy.ids | {address(old)}):
        renames[f"identity-{business}.{keyed(the_id, epoch)}"] = (
            f"identity-{business}.{customer_key(business, the_id, epoch, ring)}"
        )
    for category in ("contact", "access"):
        renames[f"{category}-{business}.{old_contact}"] = f"{category}-{business}.{new_contact}"
    # Only the streams there are (an id linked after the upgrade has its stream under its
    # pseudonym already: it is in `linked`).
    there = {
        r["stream_name"]
        for r in await conn.fetch(
            "SELECT DISTINCT stream_name FROM events WHERE stream_name = ANY($1::text[])",
            list(renames),
        )
    }
    renames = {old_name: new_name for old_name, new_name in renames.items() if old_name in there}
    if await conn.fetchval(
        "SELECT count(*) FROM events WHERE stream_name = ANY($1::text[])", list(renames.values())
    ):
        raise Conflict(f"{business}: a stream under the new key exists already")
    old_keys = sorted(
        {ring.key_id(conversation_subject(c)) for c in conversations}
        | {ring.key_id(stream_subject(s)) for s in renames}
    )
    rows = await _rows(
        conn,
        cipher,
        "stream_name = ANY($1::text[]) OR data->>'_k' = ANY($2::text[])"
        " OR data->>'conversation_id' = ANY($3::text[])",
        [*renames, *sorted(legacy.linked)],
        old_keys,
        list(conversations),
    )
    # Whole streams renamed (rows an erasure emptied go with them), then each row rewritten.
    status = await conn.execute(
        "UPDATE events e SET stream_name = m.new"
        " FROM unnest($1::text[], $2::text[]) AS m(old, new) WHERE e.stream_name = m.old",
        list(renames),
        list(renames.values()),
    )
    values = {
        "conversation_id": conversations,
        "customer": {old: new},
        "contact_id": {old_contact: new_contact},
    }
    rewritten = [(r, renames.get(r.stream, r.stream), _rewrite(r, values, old)) for r in rows]
    wanted = {k for _, stream, d in rewritten if (k := cipher.key_id_for(stream, d))}
    await cipher.load(conn, wanted, create=True)
    await conn.executemany(
        "UPDATE events SET data = $2 WHERE global_position = $1",
        [(r.position, cipher.encrypt(stream, r.type, d)) for r, stream, d in rewritten],
    )
    await _campaign_audiences(conn, business, old, new, conversations)
    await _tables(conn, business, old, new, conversations, old_contact, new_contact)
    await ring.shred(conn, old_keys)  # nothing is sealed under them any more
    return len(rewritten), int(status.split()[-1])


async def _campaign_audiences(
    conn: asyncpg.Connection, business: str, old: str, new: str, conversations: dict[str, str]
) -> None:
    """A campaign's evaluated audience names its recipients by key (in clear: the campaign
    is the business's), and the read model of its recipients is rebuilt from it."""
    for row in await conn.fetch(
        "SELECT global_position, data FROM events WHERE split_part(stream_name, '-', 1) ="
        " 'campaigncmd' AND type = 'CampaignAudience' AND data->>'business_id' = $1"
        " AND strpos(data::text, $2) > 0",
        business,
        old,
    ):
        data = _json(row["data"])
        recipients = data.get("recipients")
        if not isinstance(recipients, list):
            continue
        moved = [
            {**r, "to": new} if isinstance(r, dict) and r.get("to") == old else r
            for r in recipients
        ]
        if moved != recipients:
            await conn.execute(
                "UPDATE events SET data = $2 WHERE global_position = $1",
                row["global_position"],
                {**data, "recipients": moved},
            )


async def _tables(
    conn: asyncpg.Connection,
    business: str,
    old: str,
    new: str,
    conversations: dict[str, str],
    old_contact: str,
    new_contact: str,
) -> None:
    """The services' own tables that name the customer (the read models are rebuilt)."""
    await conn.execute(
        "UPDATE campaign_sends s SET customer = $3,"
        " address = CASE WHEN s.address = '' THEN $4 ELSE s.address END"
        " FROM campaign_runs r WHERE r.campaign_id = s.campaign_id AND r.business_id = $1"
        " AND s.customer = $2",
        business,
        old,
        new,
        address(old),
    )
    for table in ("campaign_reach", "campaign_marketing_limited"):
        await conn.execute(
            f"UPDATE {table} SET customer = $3 WHERE business_id = $1 AND customer = $2",
            business,
            old,
            new,
        )
    await conn.execute(
        "UPDATE campaign_opt_outs SET contact_id = $2 WHERE contact_id = $1",
        old_contact,
        new_contact,
    )
    for table in ("conversation_bot_timers", "conversation_handback_timers"):
        await conn.execute(
            f"UPDATE {table} t SET conversation_id = m.new"
            " FROM unnest($1::text[], $2::text[]) AS m(old, new) WHERE t.conversation_id = m.old",
            list(conversations),
            list(conversations.values()),
        )


async def pending_erasures(conn: asyncpg.Connection) -> int:
    """Erasures not done yet: their plans name contacts by the ids the migration changes."""
    return int(await conn.fetchval("SELECT count(*) FROM erasures WHERE status = 'pending'"))


async def connected_services(conn: asyncpg.Connection) -> list[str]:
    """The services connected to this database (each tags its sessions with its name)."""
    from shared.services import SERVICES

    rows = await conn.fetch(
        "SELECT DISTINCT application_name FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    names = [str(r["application_name"]) for r in rows]
    return sorted(n for n in names if n.rsplit("-", 1)[0] in SERVICES or n in SERVICES)


class Conflict(Exception):
    """A customer cannot be moved as it is (said, and left as it was)."""


async def migrate(
    pool: asyncpg.Pool,
    ring: KeyRing,
    business_of: BusinessOf,
    *,
    seal: bool = True,
    businesses: Iterable[str] | None = None,
) -> Moved:
    """Move every customer from before pseudonyms (of `businesses`, when given)."""
    cipher = PersonalCipher(ring, seal=seal)
    moved = Moved()
    async with pool.acquire() as conn:
        customers = await find(conn, cipher, business_of, businesses)
    for legacy in customers:
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    rows, renamed = await move(conn, ring, cipher, legacy)
            except Conflict as exc:
                moved.skipped.append(str(exc))
                log.warning(
                    "customer left under their old key", extra={"fields": {"why": str(exc)}}
                )
                continue
        moved.customers += 1
        moved.rows += rows
        moved.renamed += renamed
    return moved
