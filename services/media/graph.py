"""The Graph API's media endpoints: look up a media id, download its bytes, upload a file.

Download is the two-step Meta asks for: `GET /{media_id}` (with the bearer token) gives a
URL that lives 5 minutes, then `GET url` with the same token. The body is streamed to a
temporary file and hashed on the way, never held whole in memory; the size limit is enforced
before (declared size) and during (actual bytes) the transfer. An expired URL means asking for
the media id again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from services.media import calls
from services.media.domain import expected_digest
from shared.directory import Directory
from shared.errors import PermanentError
from shared.media_store import open_private
from shared.resilience import Upstream, UpstreamError, Upstreams

CHUNK = 256 * 1024


class MediaError(Exception):
    """Something about this file went wrong. `reason` is a short code recorded in events."""

    reason = "download_failed"
    stage = "download"


class MediaNotFound(MediaError, PermanentError):
    """The media id is unknown or deleted (media ids from webhooks live 7 days)."""

    reason = "not_found"


class MediaTooLarge(MediaError, PermanentError):
    reason = "too_large"


class ChecksumMismatch(MediaError):
    """The bytes are not what Meta said they are: retried (a truncated or corrupted
    transfer), then recorded; never stored as good."""

    reason = "checksum_mismatch"


class UrlExpired(MediaError, PermanentError):
    """The download URL is no longer valid (it lives 5 minutes): ask for the media id again."""

    reason = "url_expired"


@dataclass(frozen=True)
class MediaInfo:
    media_id: str
    url: str
    mime_type: str
    sha256: str
    file_size: int | None


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str  # hex
    size: int
    info: MediaInfo
    verified: bool  # the digest matched Meta's (False only when Meta gave none we can read)
    url_fetches: int  # how many URLs it took (more than 1: a URL had expired)


def _meta_code(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        if isinstance(code, int):
            return code
        if isinstance(code, str) and code.isdigit():
            return int(code)
    return None


class GraphMedias:
    """Each number's Graph media client: its own token and its own breaker."""

    def __init__(
        self,
        upstreams: Upstreams,
        base_url: str,
        download_timeout: float,
        directory: Directory,
    ) -> None:
        self.upstreams, self.base_url, self.download_timeout = upstreams, base_url, download_timeout
        self.directory = directory
        self._each: dict[tuple[str, str], GraphMedia] = {}

    async def __call__(self, phone_number_id: str) -> GraphMedia | None:
        """None when the number has no access token (a dry run): nothing to download with."""
        number = await self.directory.number(phone_number_id)
        if number is None or not number.access_token:
            return None
        key = (phone_number_id, number.access_token)
        if key not in self._each:
            self._each[key] = GraphMedia(
                self.upstreams(phone_number_id),
                self.base_url,
                number.access_token,
                self.download_timeout,
            )
        return self._each[key]


class GraphMedia:
    def __init__(
        self,
        upstream: Upstream,
        base_url: str,
        access_token: str,
        download_timeout: float,
    ) -> None:
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {access_token}"}
        # A big document may take longer than any total deadline: bound the connect and every
        # wait for the next bytes instead, so a stalled transfer fails and a slow one finishes.
        self.download_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=download_timeout, sock_read=download_timeout
        )

    async def info(self, media_id: str) -> MediaInfo:
        def classify(status: int, body: Any, headers: Any) -> None:
            # Meta answers an unknown or deleted id with 404, or 400 and code 100.
            if status == 404 or (status == 400 and _meta_code(body) == 100):
                raise MediaNotFound(f"media id {media_id} not found ({status})")

        body = await self.upstream.request(
            "GET", f"{self.base_url}/{media_id}", classify=classify, headers=self.headers
        )
        if not isinstance(body, dict) or not body.get("url"):
            raise UpstreamError(self.upstream.name, 200, body, transient=True)
        size = body.get("file_size")
        return MediaInfo(
            media_id=str(body.get("id") or media_id),
            url=str(body["url"]),
            mime_type=str(body.get("mime_type") or ""),
            sha256=str(body.get("sha256") or ""),
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    async def download(
        self, media_id: str, limit: int, tmp_dir: Path, fallback_sha256: str = ""
    ) -> Downloaded:
        info = await self.info(media_id)
        if info.file_size is not None and info.file_size > limit:
            raise MediaTooLarge(f"{info.file_size} bytes declared, the limit is {limit}")
        fetches = 1
        while True:
            try:
                path, digest, size = await calls.call(
                    self.upstream, lambda s, url=info.url: self._fetch(s, url, limit, tmp_dir)
                )
                break
            except UrlExpired:
                if fetches >= 2:
                    raise
                # The URL died before we used it (or between tries): get a fresh one, once.
                info = await self.info(media_id)
                fetches += 1
        expected = expected_digest(info.sha256) or expected_digest(fallback_sha256)
        if expected is not None and expected != digest:
            path.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"sha256 of the {size} bytes received is {digest.hex()}, Meta said {info.sha256}"
            )
        return Downloaded(path, digest.hex(), size, info, expected is not None, fetches)

    async def _fetch(
        self, session: aiohttp.ClientSession, url: str, limit: int, tmp_dir: Path
    ) -> tuple[Path, bytes, int]:
        path = tmp_dir / f"{uuid.uuid4().hex}.part"
        ok = False
        try:
            async with session.get(
                url, headers=self.headers, timeout=self.download_timeout
            ) as resp:
                if resp.status in (401, 403, 404, 410):
                    raise UrlExpired(f"download URL answered {resp.status}")
                await calls.raise_for_status(self.upstream.name, resp)
                digest = hashlib.sha256()
                size = 0
                # Writes of one chunk land in the page cache: cheaper than a thread hop each.
                with open_private(path) as out:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise MediaTooLarge(f"more than {limit} bytes received")
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    # On disk before anything records it as stored; fsync may block for long.
                    await asyncio.to_thread(os.fsync, out.fileno())
            ok = True
            return path, digest.digest(), size
        finally:
            if not ok:
                with contextlib.suppress(OSError):
                    path.unlink()

    async def upload(self, phone_number_id: str, path: Path, mime_type: str, filename: str) -> str:
        """`POST /{phone_number_id}/media` (multipart): the media id to send by."""
        url = f"{self.base_url}/{phone_number_id}/media"

        async def post(session: aiohttp.ClientSession) -> str:
            # aiohttp reads the file in its executor while sending; opening it is instant.
            with open(path, "rb") as fh:  # noqa: ASYNC230
                form = aiohttp.FormData()
                form.add_field("messaging_product", "whatsapp")
                form.add_field("type", mime_type)
                form.add_field("file", fh, filename=filename, content_type=mime_type)
                async with session.post(
                    url, data=form, headers=self.headers, timeout=self.upstream.timeout
                ) as resp:
                    await calls.raise_for_status(self.upstream.name, resp)
                    body = await resp.json(content_type=None)
            if not isinstance(body, dict) or not body.get("id"):
                raise UpstreamError(self.upstream.name, 200, body, transient=True)
            return str(body["id"])

        return await calls.call(self.upstream, post)
