"""A person's attachments (`POST /v1/media?phone_number_id=`, an extension): the file, as
the body with its own Content-Type, is uploaded to Meta for the number (Graph `POST
/{phone_number_id}/media`), and the answer is the media id to send it by (`{"type":
"image", "image": {"id"}}`). The console's reply box attaches this way.

Not kept here: Meta holds the upload (30 days), and the message that sends it is what the
conversation records. Meta's own limits are checked first, so a file Meta would refuse is
a 413 or a 415 naming it, never a 500: the types it takes for each kind and their sizes."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from services.api import inputs
from services.api.errors import ApiError, invalid, unavailable
from services.api.graph import GraphClient, MetaRefused, MetaUnreachable
from services.api.routes import Call, Reply
from services.api.schemas import Answer
from services.api.sending import resolve_number
from services.api.writes import write
from shared.directory import Directory

MB = 1024 * 1024
# Meta's media types and the largest file of each kind (Cloud API, "Supported media types").
KINDS = {
    "image": ({"image/jpeg", "image/png"}, 5 * MB),
    "sticker": ({"image/webp"}, 500 * 1024),
    "audio": ({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}, 16 * MB),
    "video": ({"video/mp4", "video/3gpp"}, 16 * MB),
    "document": (
        {
            "text/plain",
            "application/pdf",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        },
        100 * MB,
    ),
}
KIND_OF = {mime: kind for kind, (mimes, _) in KINDS.items() for mime in mimes}
CHUNK = 256 * 1024


class Uploaded(Answer, kw_only=True):
    id: Annotated[str, Meta(description="Meta's media id: send the file by it")]
    kind: str  # image, sticker, audio, video or document: the message type to send it as
    mime_type: str
    size: int


def kind_of(mime_type: str) -> str:
    """The message kind a Content-Type is sent as; the 415 that refuses it otherwise."""
    kind = KIND_OF.get(mime_type)
    if kind is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Meta does not take {mime_type or 'a body without a type'}",
            fields=[{"path": "Content-Type", "message": ", ".join(sorted(KIND_OF))}],
        )
    return kind


async def upload(call: Call) -> Reply:
    inputs.known_query(call.request, ("phone_number_id",))
    mime_type = call.request.content_type.lower()
    kind = kind_of(mime_type)
    limit = KINDS[kind][1]
    # Read as a stream: the api's body limit (for JSON) is far under a file's.
    data = bytearray()
    while chunk := await call.request.content.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "too_large", f"Meta takes a {kind} of at most {limit} bytes")
    if not data:
        raise invalid("", "the body is empty: send the file's bytes")
    async with write(call.deps.pool) as w:
        number = await resolve_number(
            call, w, inputs.query_text(call.request, "phone_number_id", 32)
        )
    found = await Directory(call.deps.settings, call.deps.pool).number(number)
    token = found.access_token if found is not None else ""
    client = GraphClient.of(call.deps.settings)
    try:
        media_id = await client.upload_media(number, token, bytes(data), mime_type)
    except MetaUnreachable as exc:
        raise unavailable(f"Meta is unreachable ({exc}); try again") from None
    except MetaRefused as exc:
        raise ApiError(
            422, "meta_refused", f"Meta refused the file: {exc.message}", meta_code=exc.code
        ) from None
    return Reply(201, Uploaded(id=media_id, kind=kind, mime_type=mime_type, size=len(data)))
