"""The privacy routes: a contact's export (the right of access) and erasure (the right to
be forgotten), done by the eraser (erasure.py). Role admin."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from services.api import access, directory, erasure, inputs, notes, queries
from services.api import schemas as s
from services.api.errors import not_found
from services.api.routes import Call, Reply
from services.api.writes import write
from shared.events.business import RetentionChanged
from shared.events.media import MediaStored, media_stream
from shared.eventstore import new
from shared.eventstore.postgres import PostgresEventStore
from shared.observability import metrics

_encode = msgspec.json.Encoder().encode


async def erase(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    contact_id = call.path("contact_id", "contact")
    business = call.business_id
    async with call.deps.pool.acquire() as conn, conn.transaction():
        known = await conn.fetchval(
            "SELECT 1 FROM api_contacts WHERE contact_id = $1 AND business_id = $2"
            " UNION ALL SELECT 1 FROM erasures WHERE contact_id = $1 AND business_id = $2"
            " LIMIT 1",
            contact_id,
            business,
        )
        if known is None:
            raise not_found("contact")
        erasure_id = await erasure.request(conn, business, contact_id, call.principal.actor)
        metrics.erasures_requested.labels("request").inc()
        status = await conn.fetchval(
            "SELECT status FROM erasures WHERE erasure_id = $1", erasure_id
        )
    return Reply(202, s.ErasureAccepted(erasure_id=erasure_id, status=status))


async def get_erasure(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    row = await call.deps.pool.fetchrow(
        "SELECT erasure_id, contact_id, status, requested_at, completed_at FROM erasures"
        " WHERE erasure_id = $1 AND business_id = $2",
        call.path("erasure_id", "erasure"),
        call.business_id,
    )
    if row is None:
        raise not_found("erasure")
    return Reply(200, s.Erasure(**dict(row)))


async def export(call: Call) -> Reply:
    inputs.known_query(call.request, ("media",))
    with_media = inputs.query_choice(call.request, "media", ("0", "1")) == "1"
    contact_id = call.path("contact_id", "contact")
    business = call.business_id
    async with call.deps.pool.acquire() as conn:
        contact = await queries.get_contact(conn, business, contact_id)
        if contact is None:
            raise not_found("contact")
        conversations = []
        rows = await conn.fetch(
            queries._CONVERSATION + " WHERE c.contact_id = $1 AND c.business_id = $2"
            " ORDER BY c.created_at",
            contact_id,
            business,
        )
        wamids: list[str] = []
        for row in rows:
            messages = await conn.fetch(
                "SELECT * FROM api_messages WHERE conversation_id = $1 AND business_id = $2"
                " ORDER BY sort_position, message_id",
                row["conversation_id"],
                business,
            )
            wamids += [m["message_id"] for m in messages if m["direction"] == "inbound"]
            conversations.append(
                s.ExportedConversation(
                    conversation=queries.conversation(row),
                    messages=[queries.conversation_message(m) for m in messages],
                )
            )
        files = await _files(PostgresEventStore(conn=conn), wamids) if with_media else []
        contact_notes = await notes.all_notes(conn, business, contact_id)
    await access.record(call, contact_id, "export")
    root = Path(call.deps.settings.media_dir)
    present = [(name, root / key) for name, key in files if (root / key).is_file()]
    document = s.ContactExport(
        contact=contact,
        conversations=conversations,
        notes=contact_notes,
        media=[name for name, _ in present],
        exported_at=datetime.now(UTC),
    )
    if not with_media:
        return Reply(200, document)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.json", _encode(document))
        for name, path in present:
            archive.write(path, f"media/{name}")
    return Reply(200, raw=buffer.getvalue(), content_type="application/zip")


async def _files(store: PostgresEventStore, wamids: list[str]) -> list[tuple[str, str]]:
    """(name in the zip, store key) of the customer's kept files."""
    found: list[tuple[str, str]] = []
    for wamid in wamids:
        for recorded in await store.read_stream(media_stream(wamid)):
            e = recorded.event
            if isinstance(e, MediaStored) and e.store in ("", "local") and e.store_key:
                name = e.store_key.rsplit("/", 1)[-1]
                extension = e.mime_type.split("/")[-1].split(";")[0] if e.mime_type else "bin"
                found.append((f"{name}.{extension}", e.store_key))
    return found


async def get_retention(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    return Reply(200, await _retention(call.deps.pool, call))


async def put_retention(call: Call) -> Reply:
    body, _ = await inputs.body(call.request, s.PutRetention)
    business = call.business_id
    event = RetentionChanged(
        business_id=business,
        contacts_inactive_days=body.contacts_inactive_days,
        media_days=body.media_days,
        actor=call.actor.name,
    )
    async with write(call.deps.pool) as w:
        await directory.record(w, business, [new(event, metadata=call.actor.metadata)])
        await w.conn.execute(
            "INSERT INTO privacy_settings (business_id, contacts_inactive_days, media_days)"
            " VALUES ($1, $2, $3) ON CONFLICT (business_id) DO UPDATE SET"
            " contacts_inactive_days = EXCLUDED.contacts_inactive_days,"
            " media_days = EXCLUDED.media_days, updated_at = now()",
            business,
            body.contacts_inactive_days,
            body.media_days,
        )
    return Reply(200, await _retention(call.deps.pool, call))


async def _retention(db: Any, call: Call) -> s.Retention:
    row = await db.fetchrow(
        "SELECT contacts_inactive_days, media_days FROM privacy_settings WHERE business_id = $1",
        call.business_id,
    )
    own = row["contacts_inactive_days"] if row else None
    media = row["media_days"] if row else None
    settings = call.deps.settings
    return s.Retention(
        contacts_inactive_days=own,
        effective_days=own or settings.retention_days or None,
        media_days=media,
        effective_media_days=media or settings.media_retention_days or None,
    )
