"""`GET /v1/conversations/{id}/messages/{message_id}/media`: a customer's file, for a key of
the conversation's business. The conversations read model knows where the media service
kept it (MediaStored: its store and content key); the bytes are read from that store,
`MEDIA_DIR` or the S3 bucket, read-only. Another business's message is a 404 like one that
does not exist; a file not kept yet is 409 `media_not_stored`, one given up 409
`media_unavailable` with the media service's reason."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from services.api import access
from services.api.errors import conflict, not_found
from services.api.routes import Call, Reply
from shared.config import Settings
from shared.media_store import S3Store

# The file is the customer's: never rendered by a browser as a page of this origin, never
# kept by a shared cache.
FILE_HEADERS = {
    "Content-Disposition": "attachment",
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


class MediaFiles:
    """The media service's store, read-only (the api never writes or deletes a file)."""

    def __init__(self, settings: Settings) -> None:
        self.root = Path(settings.media_dir).resolve()
        self.s3: S3Store | None = None
        if settings.media_s3_bucket:
            # Objects are fetched into a private folder of the api's own (0700).
            self.s3 = S3Store.from_settings(settings, Path(tempfile.mkdtemp(prefix="api-media-")))

    async def response(self, store: str, key: str, mime_type: str) -> web.StreamResponse:
        headers = {**FILE_HEADERS, "Content-Type": mime_type or "application/octet-stream"}
        if store == "s3":
            if self.s3 is None:
                raise conflict("media_unavailable", "the file is in S3, which is not configured")
            async with self.s3.local_copy(key) as path:
                body = await asyncio.to_thread(path.read_bytes)
            return web.Response(body=body, headers=headers)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise conflict("media_unavailable", "the file is not in the media store")
        return web.FileResponse(path, headers=headers)


async def get_media(call: Call) -> Reply:
    conversation = call.path("conversation_id", "conversation")
    message = call.path("message_id", "message")
    row = await call.deps.pool.fetchrow(
        "SELECT media FROM api_messages"
        " WHERE message_id = $1 AND conversation_id = $2 AND business_id = $3",
        message,
        conversation,
        call.business_id,
    )
    media: dict[str, Any] | None = row["media"] if row is not None else None
    if not media:
        raise not_found("media")
    if media.get("expired"):
        raise conflict("media_expired", "the file was deleted at the business's media retention")
    if media.get("failed"):
        raise conflict("media_unavailable", f"the file could not be kept: {media['failed']}"[:300])
    if not media.get("store_key"):
        raise conflict("media_not_stored", "the file is not stored yet; try again shortly")
    files = call.deps.media
    if files is None:
        raise conflict("media_unavailable", "this api does not serve files")
    contact = await access.contact_of_conversation(call.deps.pool, call.business_id, conversation)
    await access.record(call, contact, "media")
    response = await files.response(
        str(media.get("store") or "local"), str(media["store_key"]), str(media.get("mime_type", ""))
    )
    return Reply(200, stream=response)
