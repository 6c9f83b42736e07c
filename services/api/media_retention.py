"""Media retention: the files customers sent are deleted `media_days` after their message
(the business's own, `PUT /v1/privacy/retention`, or MEDIA_RETENTION_DAYS; none by
default). The message stays, with its text or caption; its file answers `media_expired`.

Run by the api's eraser at each retention check. Each file is deleted first, then its
MediaExpired recorded (with an id derived from the message, so a second run, before the
read model shows the first, records nothing new): a crash in between deletes nothing twice
and records it at the next run. The store's dedup is per customer, so one file may serve
several messages of the same customer: it is deleted only once no newer message of theirs
still uses it."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from shared.events.media import MediaExpired, media_stream
from shared.eventstore import new
from shared.eventstore.postgres import PostgresEventStore
from shared.media_store import MediaStore
from shared.observability import metrics

log = logging.getLogger("api.media_retention")

_DUE = """
SELECT m.business_id, m.message_id, m.conversation_id, m.media,
       COALESCE(p.media_days, $1::int) AS days,
       EXISTS (SELECT 1 FROM api_messages o
                 LEFT JOIN privacy_settings po ON po.business_id = o.business_id
                WHERE (o.media->>'store_key') = (m.media->>'store_key')
                  AND o.media ? 'store_key' AND o.message_id <> m.message_id
                  AND NOT (o.media ? 'expired')
                  -- and not due itself (two due messages of one file: the first deletes it)
                  AND (COALESCE(po.media_days, NULLIF($1::int, 0)) IS NULL
                       OR o.created_at >= now()
                          - make_interval(days => COALESCE(po.media_days, $1))))
         AS shared
  FROM api_messages m
  LEFT JOIN privacy_settings p ON p.business_id = m.business_id
 WHERE m.media IS NOT NULL AND m.direction = 'inbound'
   AND m.media ? 'store_key' AND NOT (m.media ? 'expired')
   AND COALESCE(m.media->>'store', 'local') = ANY($3::text[])
   AND COALESCE(p.media_days, NULLIF($1::int, 0)) IS NOT NULL
   AND m.created_at < now() - make_interval(days => COALESCE(p.media_days, $1))
 ORDER BY m.created_at
 LIMIT $2
"""


async def expire_media(
    pool: asyncpg.Pool, stores: dict[str, MediaStore], default_days: int, limit: int = 500
) -> int:
    """Delete the files past their business's media retention and record it; how many
    messages' files expired. `stores`: the stores by name (local, s3) this api reaches."""
    # Only files in stores this api reaches: the others would come back first at every check.
    rows = await pool.fetch(_DUE, default_days, limit, sorted(stores))
    expired = 0
    for row in rows:
        media: dict[str, Any] = row["media"]
        store_name = str(media.get("store") or "local")
        key = str(media.get("store_key"))
        store = stores.get(store_name)
        if store is None:
            log.error(
                "media retention cannot reach a store", extra={"fields": {"store": store_name}}
            )
            continue
        if not row["shared"]:
            await store.delete(key)
        event = MediaExpired(
            wamid=row["message_id"],
            conversation_id=row["conversation_id"],
            business_id=row["business_id"],
            store=store_name,
            store_key=key,
            days=row["days"],
        )
        async with pool.acquire() as conn:
            await PostgresEventStore(conn=conn).append(
                media_stream(row["message_id"]),
                [new(event, "media-expired", row["message_id"])],
            )
        expired += 1
    if expired:
        metrics.media_expired.inc(expired)
        log.info("media retention: files deleted", extra={"fields": {"messages": expired}})
    return expired
