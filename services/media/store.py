"""Where files are kept for good, content-addressed by sha256: the same bytes are stored once.

`LocalStore` keeps them under a directory (`MEDIA_DIR`); `S3Store` in any S3-compatible object
store (AWS S3, MinIO, Ceph, R2, ...) through boto3, run in worker threads since it is blocking.
Both take a finished temporary file (already verified) and move it into place, so a reader
never sees a half-written object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from services.media.domain import content_key
from shared.config import Settings


class MediaStore(Protocol):
    name: str

    async def put(self, path: Path, sha256_hex: str, mime_type: str) -> tuple[str, bool]:
        """Keep the file at `path` (consumed); returns (key, whether it was already there)."""
        ...

    def local_copy(self, key: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A local path holding the object's bytes, for the duration of the block."""
        ...

    async def exists(self, key: str) -> bool: ...


class LocalStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        return self.root / key

    async def put(self, path: Path, sha256_hex: str, mime_type: str) -> tuple[str, bool]:
        return await asyncio.to_thread(self._put, path, content_key(sha256_hex))

    def _put(self, path: Path, key: str) -> tuple[str, bool]:
        final = self.path_of(key)
        if final.exists() and final.stat().st_size == path.stat().st_size:
            path.unlink(missing_ok=True)
            return key, True
        final.parent.mkdir(parents=True, exist_ok=True)
        # Atomic on one filesystem (the temporary files live under the same root).
        os.replace(path, final)
        _fsync_dir(final.parent)
        return key, False

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        path = self.path_of(key)
        if not path.is_file():
            raise FileNotFoundError(f"no stored object {key}")
        yield path

    async def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Store:
    name = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str, tmp_dir: Path) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.tmp_dir = tmp_dir

    @classmethod
    def from_settings(cls, settings: Settings, tmp_dir: Path) -> S3Store:
        import boto3  # only S3 deployments pay for importing it
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=settings.media_s3_endpoint_url or None,
            region_name=settings.media_s3_region or None,
            # Empty: boto3's usual chain (AWS_* variables, profile, instance role).
            aws_access_key_id=settings.media_s3_access_key_id or None,
            aws_secret_access_key=settings.media_s3_secret_access_key or None,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                # Path-style works with MinIO and other self-hosted stores as well as AWS.
                s3={"addressing_style": "path"},
            ),
        )
        return cls(client, settings.media_s3_bucket, settings.media_s3_prefix, tmp_dir)

    def object_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self.client.head_object, Bucket=self.bucket, Key=self.object_key(key)
            )
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    async def put(self, path: Path, sha256_hex: str, mime_type: str) -> tuple[str, bool]:
        key = content_key(sha256_hex)
        try:
            if await self.exists(key):
                return key, True
            # upload_file streams from disk and switches to multipart uploads for big files.
            await asyncio.to_thread(
                self.client.upload_file,
                str(path),
                self.bucket,
                self.object_key(key),
                ExtraArgs={
                    "ContentType": mime_type or "application/octet-stream",
                    "Metadata": {"sha256": sha256_hex},
                },
            )
            return key, False
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = self.tmp_dir / f"{uuid.uuid4().hex}.get"
        try:
            await asyncio.to_thread(
                self.client.download_file, self.bucket, self.object_key(key), str(path)
            )
            yield path
        finally:
            path.unlink(missing_ok=True)


def make_store(settings: Settings) -> tuple[MediaStore, Path]:
    """The configured store and the directory for temporary files (under MEDIA_DIR, so a
    local store's rename stays on one filesystem)."""
    root = Path(settings.media_dir)
    tmp_dir = root / ".incoming"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if settings.media_s3_bucket:
        return S3Store.from_settings(settings, tmp_dir), tmp_dir
    return LocalStore(root), tmp_dir


def remove_stale_temporaries(tmp_dir: Path, older_than: float = 3600.0) -> int:
    """Downloads cut short by a crash leave `.part` files: the redelivered command downloads
    again, so they only take space. Old ones are removed at start (a young one may belong
    to another instance that is downloading right now)."""
    removed = 0
    cutoff = time.time() - older_than
    for path in tmp_dir.glob("*.*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
