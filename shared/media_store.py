"""Where files are kept for good, content-addressed by sha256 within their owner (the
customer's conversation): the same bytes from one customer are stored once, and from two
customers twice, so that erasing one never deletes a file of another.

`LocalStore` keeps them under a directory (`MEDIA_DIR`); `S3Store` in any S3-compatible object
store (AWS S3, MinIO, Ceph, R2, ...) through boto3, run in worker threads since it is blocking.
Both take a finished temporary file (already verified) and move it into place, so a reader
never sees a half-written object.

Customers' files are private whatever the umask: every file the service writes is 0600 and
every folder it makes (the root, `.incoming/`, the content folders) 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from shared.config import Settings


def content_key(sha256_hex: str, owner: str = "") -> str:
    """Content-addressed within the owner (`media_owner`): the same bytes of one owner
    always get the same key, so they are kept once; without an owner (files written before
    dedup was per customer), by the bytes alone."""
    if owner:
        return f"sha256/{owner}/{sha256_hex[:2]}/{sha256_hex}"
    return f"sha256/{sha256_hex[:2]}/{sha256_hex}"


def media_owner(conversation_id: str) -> str:
    """The folder of a conversation's files: a keyed pseudonym of it (the deployment's key
    ring, when MASTER_KEY is set), never the conversation id itself (which held the number
    before customer keys were pseudonyms, and still does without a key ring)."""
    from shared.crypto import datakeys

    ring = datakeys.installed()
    if ring is not None:
        return ring.pseudonym("media", conversation_id)
    # No key ring: an unkeyed hash still keeps owners apart, but does not hide the number
    # from someone who tries every number (documented in docs/privacy.md).
    return hashlib.sha256(b"media\x1f" + conversation_id.encode()).hexdigest()[:32]


class MediaStore(Protocol):
    name: str

    async def put(
        self, path: Path, sha256_hex: str, mime_type: str, owner: str = ""
    ) -> tuple[str, bool]:
        """Keep the file at `path` (consumed); returns (key, whether it was already there)."""
        ...

    def local_copy(self, key: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A local path holding the object's bytes, for the duration of the block."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Remove the object (an erasure, a retention); whether it was there."""
        ...


class LocalStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        return self.root / key

    async def put(
        self, path: Path, sha256_hex: str, mime_type: str, owner: str = ""
    ) -> tuple[str, bool]:
        return await asyncio.to_thread(self._put, path, content_key(sha256_hex, owner))

    def _put(self, path: Path, key: str) -> tuple[str, bool]:
        final = self.path_of(key)
        if final.exists() and final.stat().st_size == path.stat().st_size:
            path.unlink(missing_ok=True)
            return key, True
        private_dir(final.parent)
        # Whoever wrote the temporary file, and with whatever umask: the kept one is 0600.
        os.chmod(path, FILE_MODE)
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

    async def delete(self, key: str) -> bool:
        root = self.root.resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            return False  # a key that would leave the store: not ours to touch
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True


FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` as a folder of mode 0700, with each parent it had to make 0700 too (mkdir's
    mode is cut by the umask, and `parents=True` ignores it; chmod is exact)."""
    missing: list[Path] = []
    at = path
    while not at.is_dir():
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)
    if not missing:
        os.chmod(path, DIR_MODE)  # made before files were private: made so now
    return path


def open_private(path: Path) -> BinaryIO:
    """A new file for writing, 0600 from its creation (never readable by others, even for
    the moment before a chmod)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")


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

    async def delete(self, key: str) -> bool:
        # S3's delete succeeds whether or not the object was there: ask first, to count.
        there = await self.exists(key)
        if there:
            await asyncio.to_thread(
                self.client.delete_object, Bucket=self.bucket, Key=self.object_key(key)
            )
        return there

    async def put(
        self, path: Path, sha256_hex: str, mime_type: str, owner: str = ""
    ) -> tuple[str, bool]:
        key = content_key(sha256_hex, owner)
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
        private_dir(self.tmp_dir)
        path = self.tmp_dir / f"{uuid.uuid4().hex}.get"
        try:
            await asyncio.to_thread(
                self.client.download_file, self.bucket, self.object_key(key), str(path)
            )
            os.chmod(path, FILE_MODE)  # boto3 creates it with the umask's mode
            yield path
        finally:
            path.unlink(missing_ok=True)


def make_store(settings: Settings) -> tuple[MediaStore, Path]:
    """The configured store and the directory for temporary files (under MEDIA_DIR, so a
    local store's rename stays on one filesystem)."""
    root = private_dir(Path(settings.media_dir))
    tmp_dir = private_dir(root / ".incoming")
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
