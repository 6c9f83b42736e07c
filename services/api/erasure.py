"""Erasure of a contact (`POST /v1/contacts/{id}/erase`): after it is done, nothing the
customer wrote or sent, nor their number or name, can be read back from any table, file or
answer (docs/privacy.md, decision 0011).

An erasure is a row of `erasures`, done by the api's eraser in the background, in phases
that can each run again (a crash, a restart: a pending erasure is resumed from its phase):

1. plan and shred, in one transaction: find the contact's ids, conversations, messages and
   files in the read models; destroy the data keys of its conversations and streams
   (tombstones: never made again); count the erasure of its ids (the customer's next
   message starts a new contact); empty the data of every event about it and rename its
   streams (their names hold the number); delete its read-model rows, relay deliveries and
   kept API answers; record ContactErased (CRMs get `contact.erased`). The plan is kept,
   sealed, for the next phases.
2. delete its files: the media it sent and the voice replies spoken to it, from the store
   each was kept in (the local folder or S3).
3. after every process's key cache has expired (so none can still seal under a destroyed
   key), the same sweep once more for what was on its way meanwhile, then `done`, and the
   plan is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from services.api import erasure_campaigns
from services.api.media_retention import expire_media
from shared.broker import dead_letters
from shared.config import Settings
from shared.crypto import erased
from shared.crypto.datakeys import KeyRing
from shared.crypto.personal import ERASED_KEY, KEY, SEALED, conversation_subject, stream_subject
from shared.crypto.secrets import SecretBox
from shared.crypto.transit import transit_for
from shared.events.business import ContactErased, contact_stream, erasure_stream, seen_stream
from shared.events.conversation import conversation_stream
from shared.events.dedup import identity_stream, inbox_stream
from shared.events.media import MediaStored, VoiceReplyPrepared, media_stream
from shared.eventstore import NO_STREAM, WrongExpectedVersion, category, new
from shared.eventstore.postgres import PostgresEventStore
from shared.media_store import LocalStore, MediaStore, S3Store, private_dir
from shared.observability import metrics

log = logging.getLogger("api.erasure")
EMPTIED = msgspec.json.encode({KEY: ERASED_KEY, SEALED: ""}).decode()
POLL_SECONDS = 0.5
FAILED_BACKOFF = 5.0


class Plan(msgspec.Struct, kw_only=True):
    """Everything the erasure must reach, found before the read models forget it."""

    business_id: str
    contact_id: str
    ids: list[str]  # the customer's key and every id they are known by
    conversations: list[str]
    messages: list[str]  # message ids of the read model (wamids of inbound messages, ...)
    wamids: list[str]
    media: list[str] = []  # store keys of their files in the local store
    s3_media: list[str] = []  # and in the S3 store
    epoch: int = 0  # of the customer's identity streams (their erasures before this one)
    renamed: int = 0  # how many sweeps renamed streams (names stay unique)

    def streams(self, ring: KeyRing) -> list[str]:
        """Streams named after the customer: their names are renamed."""
        names = [contact_stream(self.business_id, self.contact_id)]
        addresses = sorted({erased.address(i) for i in self.ids if not erased.is_pseudonym(i)})
        for a in addresses:
            # Named by the id's pseudonym, or (streams from before pseudonyms) the id itself.
            for key in sorted(
                {
                    erased.customer_key(self.business_id, a, self.epoch, ring),
                    erased.keyed(a, self.epoch),
                }
            ):
                names.append(identity_stream(self.business_id, key))
        for cid in self.conversations:
            names += [inbox_stream(cid), conversation_stream(cid), seen_stream(cid)]
        return names

    def key_ids(self, ring: KeyRing) -> list[str]:
        subjects = [conversation_subject(c) for c in self.conversations]
        subjects += [stream_subject(s) for s in self.streams(ring)]
        return sorted({ring.key_id(s) for s in subjects})

    def needles(self) -> list[str]:
        """What marks a relay delivery or a kept answer as theirs."""
        return sorted({self.contact_id, *self.conversations, *self.ids} - {""})


@dataclass
class Eraser:
    pool: asyncpg.Pool
    ring: KeyRing
    box: SecretBox
    settings: Settings
    settle_seconds: float = 0.0  # 0: two key lifetimes (the ring's ttl)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def settle(self) -> float:
        return self.settle_seconds or 2 * self.ring.ttl

    async def follow(self) -> None:
        """Do pending erasures, oldest first, for as long as the service runs; and, every
        RETENTION_CHECK_SECONDS, ask for those of contacts past their retention."""
        checked = 0.0
        while True:
            try:
                if time.monotonic() - checked >= self.settings.retention_check_seconds:
                    async with self.pool.acquire() as conn:
                        await expire(conn, self.settings.retention_days)
                    await expire_media(self.pool, self.stores(), self.settings.media_retention_days)
                    checked = time.monotonic()
                while await self.step():
                    pass
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("erasure waits", extra={"fields": {"error": type(exc).__name__}})
            except Exception:
                # A bug: logged (the type and place, never the data), tried again later.
                log.exception("erasure failed; will try again")
                await asyncio.sleep(FAILED_BACKOFF)
            try:
                await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
            self.wake.clear()

    async def step(self) -> bool:
        """Advance the oldest pending erasure that is due and that nobody else is advancing
        by one phase; False when there is none."""
        async with self.pool.acquire() as conn:
            # An erasure settling (its last phase, not yet due) is left for a later step:
            # nothing holds a connection while it waits.
            rows = await conn.fetch(
                "SELECT erasure_id, business_id, contact_id, plan, phase, plan_at, reason"
                " FROM erasures WHERE status = 'pending'"
                "   AND (phase < 2 OR plan_at <= now() - make_interval(secs => $1))"
                " ORDER BY requested_at LIMIT 20",
                self.settle,
            )
            for row in rows:
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 7))", row["erasure_id"]
                ):
                    continue
                try:
                    await self._advance(conn, row)
                    return True
                finally:
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtextextended($1, 7))", row["erasure_id"]
                    )
        return False

    async def _advance(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        erasure_id = row["erasure_id"]
        if row["phase"] == 0:
            await self._shred(
                conn, erasure_id, row["business_id"], row["contact_id"], row["reason"]
            )
            return
        plan = self._open(erasure_id, row["plan"])
        if row["phase"] == 1:
            removed = await self._delete_files(conn, plan)
            await conn.execute(
                "UPDATE erasures SET phase = 2, counts = counts || $2::jsonb WHERE erasure_id = $1",
                erasure_id,
                {"media_files": removed},
            )
            return
        # Their dead letters (a dead letter keeps a message's body: their number, texts),
        # once settled, so that what was in flight and died since goes too.
        needles = [*plan.conversations, *plan.ids, *plan.wamids]
        dead = await dead_letters.drop_about(
            self.settings.amqp_url, needles, transit_for(self.settings.master_key)
        )
        async with conn.transaction():
            counts = await self._sweep(conn, plan, erasure_id)
            await conn.execute(
                "UPDATE erasures SET status = 'done', phase = 3, plan = NULL,"
                " completed_at = now(), counts = counts || $2::jsonb WHERE erasure_id = $1",
                erasure_id,
                {"late_rows": counts["events"], "dead_letters": dead},
            )
        metrics.contacts_erased.inc()
        log.info("contact erased", extra={"fields": {"erasure": erasure_id}})

    # --- phase 1 -------------------------------------------------------------------------------

    async def _shred(
        self,
        conn: asyncpg.Connection,
        erasure_id: str,
        business_id: str,
        contact_id: str,
        reason: str,
    ) -> None:
        async with conn.transaction():
            plan = await self._plan(conn, business_id, contact_id)
            destroyed = await self.ring.shred(conn, plan.key_ids(self.ring))
            if plan.ids:
                await erased.mark(conn, self.ring, business_id, plan.ids)
            counts = await self._sweep(conn, plan, erasure_id)
            store = PostgresEventStore(conn=conn)
            event = ContactErased(
                erasure_id=erasure_id,
                business_id=business_id,
                contact_id=contact_id,
                conversations=len(plan.conversations),
                reason=reason,
            )
            try:
                await store.append(
                    erasure_stream(erasure_id), [new(event, "erased", erasure_id)], NO_STREAM
                )
            except WrongExpectedVersion:
                pass  # recorded by an earlier run of this phase
            await conn.execute(
                "UPDATE erasures SET phase = 1, plan = $2, plan_at = now(), counts = $3::jsonb"
                " WHERE erasure_id = $1",
                erasure_id,
                self.box.seal(msgspec.json.encode(plan).decode(), f"erasure:{erasure_id}"),
                {**counts, "keys": destroyed},
            )

    async def _plan(self, conn: asyncpg.Connection, business_id: str, contact_id: str) -> Plan:
        contact = await conn.fetchrow(
            "SELECT customer, wa_id, user_id FROM api_contacts"
            " WHERE contact_id = $1 AND business_id = $2",
            contact_id,
            business_id,
        )
        ids = {
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM api_contact_ids WHERE contact_id = $1 AND business_id = $2",
                contact_id,
                business_id,
            )
        }
        if contact is not None:
            ids |= {contact["customer"], contact["wa_id"] or "", contact["user_id"] or ""}
        ids.discard("")
        conversations = {
            r["conversation_id"]
            for r in await conn.fetch(
                "SELECT conversation_id FROM api_conversations"
                " WHERE contact_id = $1 AND business_id = $2",
                contact_id,
                business_id,
            )
        }
        epoch = await erased.epoch(conn, self.ring, business_id, sorted(ids))
        # Conversations the read model has not seen yet: one per number of the business; and,
        # for a customer from before pseudonyms, the ones the statuses of messages sent to
        # them since go to (a recipient who never wrote has no link to their old key).
        if contact is not None:
            keys = {contact["customer"]}
            if not erased.is_pseudonym(contact["customer"]):
                keys |= {
                    erased.customer_key(business_id, i, epoch, self.ring)
                    for i in ids
                    if not erased.is_pseudonym(i)
                }
            for number in await conn.fetch(
                "SELECT phone_number_id FROM directory_numbers WHERE business_id = $1",
                business_id,
            ):
                conversations |= {f"{number['phone_number_id']}.{k}" for k in keys}
        messages = await conn.fetch(
            "SELECT message_id, wamid, direction FROM api_messages"
            " WHERE conversation_id = ANY($1::text[])",
            sorted(conversations),
        )
        wamids = sorted(
            {m["wamid"] or "" for m in messages}
            | {m["message_id"] for m in messages if m["direction"] == "inbound"}
        )
        wamids = [w for w in wamids if w]
        plan = Plan(
            business_id=business_id,
            contact_id=contact_id,
            ids=sorted(ids),
            conversations=sorted(conversations),
            messages=sorted(m["message_id"] for m in messages),
            wamids=wamids,
        )
        plan.media, plan.s3_media = await self._media_keys(conn, plan)
        plan.epoch = epoch
        return plan

    async def _media_keys(
        self, conn: asyncpg.Connection, plan: Plan
    ) -> tuple[list[str], list[str]]:
        """The customer's files, local and in S3, read before their keys go: what they sent
        (their media streams) and what the bot said to them (voice replies: a voice reply
        does not record its store, so it is deleted from each the api has)."""
        store = PostgresEventStore(conn=conn)
        local: set[str] = set()
        s3: set[str] = set()
        for wamid in plan.wamids:
            for recorded in await store.read_stream(media_stream(wamid)):
                e = recorded.event
                if isinstance(e, MediaStored) and e.store_key:
                    (s3 if e.store == "s3" else local).add(e.store_key)
        voices = await conn.fetch(
            "SELECT event_id FROM events WHERE split_part(stream_name, '-', 1) = 'voice'"
            " AND (data->>'_k' = ANY($1::text[]) OR data->>'conversation_id' = ANY($2::text[]))",
            plan.key_ids(self.ring),
            plan.conversations,
        )
        for row in voices:
            recorded = await store.find(row["event_id"])
            e = recorded.event if recorded is not None else None
            if isinstance(e, VoiceReplyPrepared) and e.store_key:
                # Which store kept it is not recorded: deleted from each there is.
                local.add(e.store_key)
                if self.settings.media_s3_bucket:
                    s3.add(e.store_key)
        return sorted(local), sorted(s3)

    async def _sweep(self, conn: asyncpg.Connection, plan: Plan, erasure_id: str) -> dict[str, int]:
        """Empty and rename what the store holds about the contact; delete what the read
        models, the relay and the idempotency answers hold. Safe to run again."""
        streams = plan.streams(self.ring)
        message_streams = [media_stream(w) for w in plan.wamids]
        status = await conn.execute(
            f"UPDATE events SET data = '{EMPTIED}'::jsonb"
            " WHERE (stream_name = ANY($1::text[]) OR data->>'_k' = ANY($2::text[])"
            "   OR data->>'conversation_id' = ANY($3::text[]))"
            f"  AND data <> '{EMPTIED}'::jsonb",
            streams + message_streams,
            plan.key_ids(self.ring),
            plan.conversations,
        )
        emptied = int(status.split()[-1])
        plan.renamed += 1
        renamed_to = [
            f"{category(s)}-erased.{erasure_id}.{plan.renamed}.{i}" for i, s in enumerate(streams)
        ]
        status = await conn.execute(
            "UPDATE events e SET stream_name = m.new"
            " FROM unnest($1::text[], $2::text[]) AS m(old, new) WHERE e.stream_name = m.old",
            streams,
            renamed_to,
        )
        renamed = int(status.split()[-1])
        needles = plan.needles()
        emptied += await self._sweep_quarantine(conn, [*needles, *plan.wamids])
        rows = 0
        for sql in (
            "DELETE FROM api_messages WHERE conversation_id = ANY($1::text[])",
            "DELETE FROM api_conversations WHERE conversation_id = ANY($1::text[])",
            "DELETE FROM api_analytics_conversations WHERE conversation_id = ANY($1::text[])",
            "DELETE FROM api_analytics_responses WHERE conversation_id = ANY($1::text[])",
            "DELETE FROM api_analytics_handoffs WHERE conversation_id = ANY($1::text[])",
            # The conversation's timers name it (and so the number) until they fire.
            "DELETE FROM conversation_bot_timers WHERE conversation_id = ANY($1::text[])",
            "DELETE FROM conversation_handback_timers WHERE conversation_id = ANY($1::text[])",
        ):
            rows += int((await conn.execute(sql, plan.conversations)).split()[-1])
        # The business's campaigns: its audiences named them (their number, their variables).
        rows += await erasure_campaigns.sweep(conn, plan.business_id, plan.ids, plan.contact_id)
        for sql in (
            "DELETE FROM api_contact_ids WHERE contact_id = $1",
            "DELETE FROM api_contact_notes WHERE contact_id = $1",
            "DELETE FROM api_contacts WHERE contact_id = $1",
        ):
            rows += int((await conn.execute(sql, plan.contact_id)).split()[-1])
        deliveries = int(
            (
                await conn.execute(
                    "DELETE FROM webhook_deliveries d WHERE EXISTS (SELECT 1 FROM"
                    " unnest($1::text[]) n WHERE strpos(d.body, n) > 0)",
                    needles,
                )
            ).split()[-1]
        )
        answers = int(
            (
                await conn.execute(
                    "DELETE FROM api_idempotency a WHERE EXISTS (SELECT 1 FROM"
                    " unnest($1::text[]) n WHERE position(convert_to(n, 'UTF8') in a.body) > 0)",
                    needles,
                )
            ).split()[-1]
        )
        return {
            "events": emptied,
            "streams_renamed": renamed,
            "read_model_rows": rows,
            "relay_deliveries": deliveries,
            "api_answers": answers,
        }

    @staticmethod
    async def _sweep_quarantine(conn: asyncpg.Connection, needles: list[str]) -> int:
        """Empty the quarantined bodies that name them (`quarantine-` streams: deliveries
        that are not JSON, items the store refused), kept in base64: decoded here to look.
        A quarantined body holding other customers too goes whole: it was kept only for
        inspection."""
        wanted = [n.encode() for n in needles if n]
        found = []
        for row in await conn.fetch(
            "SELECT event_id, data FROM events WHERE stream_name LIKE 'quarantine-%'"
            f" AND data <> '{EMPTIED}'::jsonb"
        ):
            data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])
            raw = json.dumps(data).encode()
            for field_ in ("body_base64", "item_base64"):
                try:
                    raw += base64.b64decode(str(data.get(field_) or ""))
                except ValueError:
                    pass
            if any(n in raw for n in wanted):
                found.append(row["event_id"])
        if not found:
            return 0
        status = await conn.execute(
            f"UPDATE events SET data = '{EMPTIED}'::jsonb WHERE event_id = ANY($1::uuid[])", found
        )
        return int(status.split()[-1])

    # --- phase 2 -------------------------------------------------------------------------------

    async def _delete_files(self, conn: asyncpg.Connection, plan: Plan) -> int:
        """Delete the plan's files, but any another message still uses (a file kept before
        the store's dedup was per customer: its key names no owner; the customer's own rows
        went in phase 1); an S3 store that cannot be reached fails the phase, which runs
        again (a file left behind would be personal data kept)."""
        used = {
            r["key"]
            for r in await conn.fetch(
                "SELECT DISTINCT media->>'store_key' AS key FROM api_messages"
                " WHERE media ? 'store_key' AND (media->>'store_key') = ANY($1::text[])",
                [*plan.media, *plan.s3_media],
            )
        }
        removed = 0
        local = LocalStore(Path(self.settings.media_dir))
        for key in plan.media:
            if key not in used:
                removed += await local.delete(key)
        s3_keys = [k for k in plan.s3_media if k not in used]
        if s3_keys:
            s3 = self._s3()
            if s3 is None:
                # Kept in S3 once, and S3 is no longer configured: said, never ignored.
                log.error(
                    "erasure cannot reach the S3 store its files are in",
                    extra={"fields": {"files": len(plan.s3_media)}},
                )
                raise RuntimeError("S3 files to erase and no MEDIA_S3_BUCKET")
            for key in s3_keys:
                removed += await s3.delete(key)
        return removed

    def stores(self) -> dict[str, MediaStore]:
        """The media stores this api reaches, by name."""
        found: dict[str, MediaStore] = {"local": LocalStore(Path(self.settings.media_dir))}
        s3 = self._s3()
        if s3 is not None:
            found["s3"] = s3
        return found

    def _s3(self) -> MediaStore | None:
        if not self.settings.media_s3_bucket:
            return None
        tmp = private_dir(Path(self.settings.media_dir) / ".incoming")
        return S3Store.from_settings(self.settings, tmp)

    def _open(self, erasure_id: str, box: bytes | None) -> Plan:
        assert box is not None, "a pending erasure past phase 0 keeps its plan"
        return msgspec.json.decode(self.box.open(bytes(box), f"erasure:{erasure_id}"), type=Plan)


def new_erasure_id() -> str:
    return "er_" + secrets.token_hex(12)


async def request(
    conn: Any, business_id: str, contact_id: str, actor: str, reason: str = "request"
) -> str:
    """The erasure of this contact: a new one, or the one already asked for (pending, or
    done: the contact is gone). Its id."""
    found = await conn.fetchval(
        "SELECT erasure_id FROM erasures WHERE business_id = $1 AND contact_id = $2"
        " ORDER BY requested_at DESC LIMIT 1",
        business_id,
        contact_id,
    )
    if found is not None:
        return str(found)
    erasure_id = new_erasure_id()
    await conn.execute(
        "INSERT INTO erasures (erasure_id, business_id, contact_id, actor, reason)"
        " VALUES ($1, $2, $3, $4, $5)",
        erasure_id,
        business_id,
        contact_id,
        actor,
        reason,
    )
    return erasure_id


# --- retention -----------------------------------------------------------------------------

_DUE = """
SELECT c.business_id, c.contact_id
  FROM api_contacts c
  LEFT JOIN privacy_settings p ON p.business_id = c.business_id
 WHERE COALESCE(p.contacts_inactive_days, NULLIF($1::int, 0)) IS NOT NULL
   AND c.last_seen_at < now() - make_interval(days => COALESCE(p.contacts_inactive_days, $1))
   AND NOT EXISTS (SELECT 1 FROM erasures e
                    WHERE e.contact_id = c.contact_id AND e.business_id = c.business_id)
 ORDER BY c.last_seen_at
 LIMIT $2
"""


async def expire(conn: Any, default_days: int, limit: int = 1000) -> int:
    """Ask for the erasure of every contact silent for longer than its business's retention
    (or `default_days`; 0: none). Returns how many were asked for."""
    rows = await conn.fetch(_DUE, default_days, limit)
    for row in rows:
        await request(conn, row["business_id"], row["contact_id"], "retention", "retention")
    if rows:
        metrics.erasures_requested.labels("retention").inc(len(rows))
        log.info("retention: erasures asked", extra={"fields": {"contacts": len(rows)}})
    return len(rows)


# --- after a restore -----------------------------------------------------------------------

RENAMED_CATEGORIES = ("inbox", "conversation", "identity", "contact")


async def sweep_tombstones(conn: Any) -> dict[str, int]:
    """Empty every row sealed under a destroyed key, and rename the customer-named streams
    that hold them: what an older data backup restored beside the newest keys brings back
    of erased customers (their rows cannot be read, but their stream names hold their
    number). Safe to run at any time; `python -m ops reerase`."""
    async with conn.transaction():
        streams = [
            r["stream_name"]
            for r in await conn.fetch(
                "SELECT DISTINCT e.stream_name FROM events e JOIN customer_keys k"
                " ON k.key_id = e.data->>'_k' WHERE k.wrapped IS NULL"
                " AND split_part(e.stream_name, '-', 1) = ANY($1::text[])"
                " AND e.stream_name NOT LIKE '%-erased.%'",
                list(RENAMED_CATEGORIES),
            )
        ]
        status = await conn.execute(
            f"UPDATE events e SET data = '{EMPTIED}'::jsonb FROM customer_keys k"
            " WHERE k.key_id = e.data->>'_k' AND k.wrapped IS NULL"
        )
        sweep = new_erasure_id()
        await conn.execute(
            "UPDATE events e SET stream_name = m.new"
            " FROM unnest($1::text[], $2::text[]) AS m(old, new) WHERE e.stream_name = m.old",
            streams,
            [f"{category(s)}-erased.{sweep}.{i}" for i, s in enumerate(streams)],
        )
    return {"events": int(status.split()[-1]), "streams_renamed": len(streams)}
