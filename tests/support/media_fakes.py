"""Real HTTP stand-ins for the media side of the outside world, with fault injection:
the Graph API's media endpoints, OpenAI's audio transcriptions, and ElevenLabs' text to speech.

They extend the fakes of `tests.support.fakes` (same recording, `inject`, `fail_always`,
`latency`), leaving what those already answer unchanged.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import re
import struct
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.payload import AsyncIterablePayload

from tests.support.fakes import (
    FakeGraphAPI,
    FakeOpenAI,
    FakeServer,
    Predicate,
    RecordedRequest,
    _bearer,
    _same_number,
    meta_error_body,
)

_VERSION = r"(?:/v\d+(?:\.\d+)?)?"


def parse_multipart(rec: RecordedRequest) -> dict[str, dict[str, Any]]:
    """Form fields of a multipart/form-data request: name -> {value, filename, content_type}."""
    content_type = rec.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + rec.body
    )
    fields: dict[str, dict[str, Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        fields[str(name)] = {
            "value": part.get_payload(decode=True) or b"",
            "filename": part.get_filename(),
            "content_type": part.get_content_type(),
        }
    return fields


# --- Graph API media ------------------------------------------------------------------------------


@dataclass
class FakeMedia:
    """One file the fake Graph API holds, as a customer's upload to WhatsApp."""

    media_id: str
    content: bytes
    mime_type: str
    # What the metadata says; defaults are the truth. Overrides make the bad cases.
    sha256: str | None = None  # hex; a wrong one makes a checksum mismatch
    declared_size: int | None = None
    served: bytes | None = None  # bytes actually served (corrupt or truncated transfers)
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks: a slow download
    deleted: bool = False

    @property
    def true_sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def is_media_info(media_id: str | None = None) -> Predicate:
    """Fault match: `GET /{media_id}` (any media id when None)."""

    def pred(rec: RecordedRequest) -> bool:
        parts = rec.path.strip("/").split("/")
        return (
            rec.method == "GET"
            and parts[0] != "download"
            and len(parts) <= 2
            and (media_id is None or parts[-1] == media_id)
        )

    return pred


def is_download(media_id: str | None = None) -> Predicate:
    """Fault match: `GET <download url>` of a media id (any when None)."""

    def pred(rec: RecordedRequest) -> bool:
        parts = rec.path.strip("/").split("/")
        return (
            rec.method == "GET"
            and len(parts) == 3
            and parts[0] == "download"
            and (media_id is None or parts[1] == media_id)
        )

    return pred


def is_upload(rec: RecordedRequest) -> bool:
    return rec.method == "POST" and rec.path.rstrip("/").endswith("/media")


class FakeGraphMedia(FakeGraphAPI):
    """FakeGraphAPI plus `GET /{media_id}`, the download URL it hands out, and
    `POST /{phone_number_id}/media` (upload)."""

    name = "fake-graph-media"
    _INFO = re.compile(rf"^{_VERSION}/(?P<mid>[^/]+)/?$")
    _DOWNLOAD = re.compile(r"^/download/(?P<mid>[^/]+)/(?P<token>[^/]+)$")
    _UPLOAD = re.compile(rf"^{_VERSION}/(?P<pid>[^/]+)/media/?$")

    def __init__(self, access_token: str = "test-token") -> None:
        super().__init__(access_token)
        self.media: dict[str, FakeMedia] = {}
        self.url_ttl = 300.0  # Meta's download URLs live 5 minutes
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.uploads: list[dict[str, Any]] = []
        self.info_requests: list[str] = []  # media ids looked up
        self.downloads_started: list[str] = []  # media ids whose bytes began to flow
        self.downloads_finished: list[str] = []

    def _reset_state(self) -> None:
        super()._reset_state()
        self.uploads.clear()
        self.info_requests.clear()
        self.downloads_started.clear()
        self.downloads_finished.clear()

    # --- test API ---

    def add_media(self, content: bytes, mime_type: str, **overrides: Any) -> FakeMedia:
        media_id = str(overrides.pop("media_id", None) or uuid.uuid4().int % 10**16)
        item = FakeMedia(media_id, content, mime_type, **overrides)
        with self._lock:
            self.media[media_id] = item
        return item

    def expire_urls(self) -> None:
        """Every URL handed out so far is past its 5 minutes."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def count(self, what: list[str], media_id: str) -> int:
        with self._lock:
            return what.count(media_id)

    def sends_of_type(self, customer: str, type_: str) -> list[dict[str, Any]]:
        return [s["body"] for s in self.sent_to(customer) if s["body"].get("type") == type_]

    # --- answers ---

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        if rec.method == "GET":
            if m := self._DOWNLOAD.match(rec.path):
                return self._download(rec, m.group("mid"), m.group("token"))
            if m := self._INFO.match(rec.path):
                return self._info(rec, m.group("mid"))
        if rec.method == "POST" and (m := self._UPLOAD.match(rec.path)):
            return self._upload(rec, m.group("pid"))
        return super().handle(rec)

    def _authorised(self, rec: RecordedRequest) -> bool:
        """The deployment's token, or a registered number's own (`tokens`): Meta takes any
        token of the app for a media id; the fake does not pin media to a number."""
        token = _bearer(rec)
        return token in {self.access_token, *self.tokens.values()} or any(
            token in former for former in self.former_tokens.values()
        )

    def _info(self, rec: RecordedRequest, media_id: str) -> web.StreamResponse:
        if not self._authorised(rec):
            return web.json_response(meta_error_body(190), status=401)
        self.info_requests.append(media_id)
        item = self.media.get(media_id)
        if item is None or item.deleted:
            # What Meta answers for an id that does not exist (or no longer does).
            message = (
                f"Unsupported get request. Object with ID '{media_id}' does not exist, cannot "
                "be loaded due to missing permissions, or does not support this operation."
            )
            return web.json_response(meta_error_body(100, message, subcode=33), status=400)
        token = uuid.uuid4().hex
        self._tokens[token] = time.monotonic() + self.url_ttl
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.url}/download/{media_id}/{token}",
                "mime_type": item.mime_type,
                "sha256": item.sha256 or item.true_sha256,
                "file_size": item.declared_size
                if item.declared_size is not None
                else len(item.content),
                "id": media_id,
            }
        )

    def _download(self, rec: RecordedRequest, media_id: str, token: str) -> web.StreamResponse:
        if not self._authorised(rec):
            return web.json_response(meta_error_body(190), status=401)
        item = self.media.get(media_id)
        if item is None or self._tokens.get(token, 0.0) < time.monotonic():
            return web.Response(status=404, text="URL signature expired")
        body = item.served if item.served is not None else item.content
        self.downloads_started.append(media_id)
        if item.chunk_delay <= 0:
            self.downloads_finished.append(media_id)
            return web.Response(body=body, content_type=item.mime_type.split(";")[0])
        return web.Response(
            body=AsyncIterablePayload(self._trickle(media_id, body, item.chunk_delay)),
            content_type=item.mime_type.split(";")[0],
        )

    async def _trickle(self, media_id: str, body: bytes, delay: float) -> AsyncIterator[bytes]:
        step = 64 * 1024
        for i in range(0, len(body), step):
            yield body[i : i + step]
            await asyncio.sleep(delay)
        with self._lock:
            self.downloads_finished.append(media_id)

    def _upload(self, rec: RecordedRequest, phone_number_id: str) -> web.StreamResponse:
        if _bearer(rec) != self.access_token:
            return web.json_response(meta_error_body(190), status=401)
        form = parse_multipart(rec)
        missing = [f for f in ("messaging_product", "file", "type") if f not in form]
        if missing or form["messaging_product"]["value"] != b"whatsapp":
            return web.json_response(
                meta_error_body(
                    100, f"The parameter {(missing or ['messaging_product'])[0]} is required."
                ),
                status=400,
            )
        media_id = str(uuid.uuid4().int % 10**16)
        file = form["file"]
        upload = {
            "phone_number_id": phone_number_id,
            "media_id": media_id,
            "type": form["type"]["value"].decode(),
            "filename": file["filename"],
            "content_type": file["content_type"],
            "data": file["value"],
        }
        self.uploads.append(upload)
        # An uploaded file can be looked up like any other (its id lives 30 days at Meta).
        self.media[media_id] = FakeMedia(media_id, file["value"], upload["type"])
        return web.json_response({"id": media_id})

    def upload(self, media_id: str) -> dict[str, Any]:
        with self._lock:
            return next(u for u in self.uploads if u["media_id"] == media_id)


# --- OpenAI audio transcriptions ------------------------------------------------------------------


def is_transcription(rec: RecordedRequest) -> bool:
    return rec.path.rstrip("/").endswith("/audio/transcriptions")


class FakeOpenAIAudio(FakeOpenAI):
    """FakeOpenAI plus `POST /audio/transcriptions` (multipart `file`, `model`)."""

    name = "fake-openai-audio"
    _TRANSCRIPTIONS = re.compile(r"^(?:/v1)?/audio/transcriptions/?$")

    def __init__(self, api_key: str = "test-key") -> None:
        super().__init__(api_key)
        self.spoken: dict[str, str] = {}  # sha256 of the audio -> what it says
        self.transcriptions: list[dict[str, Any]] = []

    def _reset_state(self) -> None:
        super()._reset_state()
        self.transcriptions.clear()

    def say(self, audio: bytes, text: str) -> None:
        """Declare what a piece of audio says (what the transcription will return)."""
        with self._lock:
            self.spoken[hashlib.sha256(audio).hexdigest()] = text

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        if self._TRANSCRIPTIONS.match(rec.path) is None:
            return super().handle(rec)
        if _bearer(rec) != self.api_key:
            return web.json_response(
                {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}},
                status=401,
            )
        form = parse_multipart(rec)
        if "file" not in form or "model" not in form:
            return web.json_response(
                {"error": {"message": "file and model are required", "type": "invalid_request"}},
                status=400,
            )
        audio = form["file"]["value"]
        sha = hashlib.sha256(audio).hexdigest()
        text = self.spoken.get(sha, f"audio of {len(audio)} bytes")
        self.transcriptions.append(
            {
                "model": form["model"]["value"].decode(),
                "filename": form["file"]["filename"],
                "content_type": form["file"]["content_type"],
                "size": len(audio),
                "sha256": sha,
                "text": text,
            }
        )
        return web.json_response({"text": text})


# --- ElevenLabs -----------------------------------------------------------------------------------


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(header_type: int, granule: int, serial: int, seq: int, packet: bytes) -> bytes:
    lacing = [255] * (len(packet) // 255) + [len(packet) % 255]
    header = struct.pack(
        "<4sBBqIIIB", b"OggS", 0, header_type, granule, serial, seq, 0, len(lacing)
    ) + bytes(lacing)
    page = header + packet
    crc = _ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


def ogg_opus(text: str, serial: int = 0x5EED) -> bytes:
    """A structurally valid Ogg Opus stream (RFC 7845 headers) whose comment carries the
    text it "says", so a test can tell which reply a voice note speaks. The audio packets
    are filler: nothing here decodes them."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    vendor = b"fake-elevenlabs"
    comment = f"TEXT={text}".encode()
    tags = (
        b"OpusTags"
        + struct.pack("<I", len(vendor))
        + vendor
        + struct.pack("<I", 1)
        + struct.pack("<I", len(comment))
        + comment
    )
    audio = bytes([0xFC, 0xFF, 0xFE]) * 40
    return (
        _ogg_page(0x02, 0, serial, 0, head)
        + _ogg_page(0x00, 0, serial, 1, tags)
        + _ogg_page(0x04, 960 * 3, serial, 2, audio)
    )


def spoken_text(ogg: bytes) -> str | None:
    """The TEXT comment of an Ogg Opus stream made by `ogg_opus` (None if absent)."""
    at = ogg.find(b"OpusTags")
    if at < 0:
        return None
    pos = at + 8
    (vendor_len,) = struct.unpack_from("<I", ogg, pos)
    pos += 4 + vendor_len
    (count,) = struct.unpack_from("<I", ogg, pos)
    pos += 4
    for _ in range(count):
        (length,) = struct.unpack_from("<I", ogg, pos)
        pos += 4
        entry = ogg[pos : pos + length].decode()
        pos += length
        if entry.startswith("TEXT="):
            return entry[5:]
    return None


@dataclass
class Synthesis:
    voice_id: str
    text: str
    model_id: str
    output_format: str
    received_at: float = field(default_factory=time.monotonic)


class FakeElevenLabs(FakeServer):
    """`POST /v1/text-to-speech/{voice_id}?output_format=...` with header `xi-api-key`."""

    name = "fake-elevenlabs"
    _TTS = re.compile(r"^/v1/text-to-speech/(?P<voice>[^/]+)/?$")

    def __init__(self, api_key: str = "test-eleven-key") -> None:
        super().__init__()
        self.api_key = api_key
        self.syntheses: list[Synthesis] = []

    def _reset_state(self) -> None:
        self.syntheses.clear()

    def handle(self, rec: RecordedRequest) -> web.StreamResponse:
        m = self._TTS.match(rec.path)
        if m is None or rec.method != "POST":
            return web.json_response({"detail": "Not Found"}, status=404)
        if rec.headers.get("xi-api-key") != self.api_key:
            return web.json_response(
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
                status=401,
            )
        body = rec.json if isinstance(rec.json, dict) else {}
        if not body.get("text"):
            return web.json_response(
                {"detail": [{"loc": ["body", "text"], "msg": "field required"}]}, status=422
            )
        output_format = rec.query.get("output_format", "mp3_44100_128")
        self.syntheses.append(
            Synthesis(m.group("voice"), body["text"], str(body.get("model_id")), output_format)
        )
        if output_format.startswith("opus_"):
            return web.Response(body=ogg_opus(body["text"]), content_type="audio/ogg")
        if output_format.startswith("mp3_"):
            # Not what WhatsApp plays as a voice note: lets a test see the service refuse it.
            return web.Response(
                body=b"ID3\x04\x00" + body["text"].encode(), content_type="audio/mpeg"
            )
        return web.json_response(
            {"detail": {"status": "invalid_output_format", "message": output_format}}, status=422
        )


def audio_sends(graph: FakeGraphAPI, customer: str) -> list[dict[str, Any]]:
    """Audio messages sent to customer (bodies), in arrival order."""
    with graph._lock:
        return [
            s["body"]
            for s in graph.sent
            if _same_number(s["to"], customer) and s["body"].get("type") == "audio"
        ]
