"""`make backup` and `make restore` (docs/privacy.md, *Backup and restore*).

A backup is a folder of three files, taken in this order so that they fit together:
1. `data.dump`: the whole database but the keys' rows (`pg_dump -Fc`, one snapshot);
2. `keys.dump`: the rows of `customer_keys`, `erased_ids` and `erasures` only, taken after
   the data, so that it holds every key the data needs (keys are only ever added, or
   destroyed by an erasure);
3. `media.tgz`: the media store, taken after the data, so that it holds every file the data
   names (less those an erasure deleted since, which is the point).
The keys dump is meant to be kept apart (its own place and schedule, with MASTER_KEY's
custody): restoring data with an older keys dump would open what was erased since.

A restore goes into a database with no events (fresh, or only migrated): the data, then the
newest keys dump (`--keys`, default the backup's own), then the media; then the migrations
this code has, the re-erasure (rows of erased customers emptied, their streams renamed:
`services/api/erasure.py`, `sweep_tombstones`) and the read models rebuilt from the log.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tarfile
from pathlib import Path

import asyncpg

from services.api.erasure import sweep_tombstones
from services.api.projections import rebuild
from shared.config import Settings
from shared.eventstore.migrate import ensure_database, migrate
from shared.eventstore.postgres import create_pool
from shared.runtime import install_privacy

KEY_TABLES = ("customer_keys", "erased_ids", "erasures")
DATA, KEYS, MEDIA = "data.dump", "keys.dump", "media.tgz"


class BackupError(Exception):
    """What the operator must fix; the message says it."""


def _dsn(url: str) -> str:
    # libpq takes the URL as it is; our own tags (application_name) are harmless.
    return url


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{args[0]} failed: {done.stderr.strip()[-500:]}")


def backup(settings: Settings, out: Path) -> dict[str, int]:
    """Write the three files into `out` (made 0700; the files 0600). Returns their sizes."""
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    old = os.umask(0o077)
    try:
        excluded = [f"--exclude-table-data={t}" for t in KEY_TABLES]
        _run(["pg_dump", "-Fc", *excluded, "-f", str(out / DATA), _dsn(settings.database_url)])
        tables = [f"--table={t}" for t in KEY_TABLES]
        _run(
            ["pg_dump", "-Fc", "--data-only", *tables, "-f", str(out / KEYS),
             _dsn(settings.database_url)]
        )  # fmt: skip
        media = Path(settings.media_dir)
        with tarfile.open(out / MEDIA, "w:gz") as archive:
            if media.is_dir():
                archive.add(media, arcname=".")
    finally:
        os.umask(old)
    return {name: (out / name).stat().st_size for name in (DATA, KEYS, MEDIA)}


def restore(settings: Settings, source: Path, keys: Path | None = None) -> dict[str, int]:
    """Restore `source` (a backup folder) into DATABASE_URL and MEDIA_DIR, with the keys of
    `keys` (a keys.dump; default the backup's own). Returns what the re-erasure and the
    rebuild did."""
    keys = keys or source / KEYS
    for path in (source / DATA, keys, source / MEDIA):
        if not path.is_file():
            raise BackupError(f"{path} is missing")
    asyncio.run(_check_fresh(settings.database_url))
    dsn = _dsn(settings.database_url)
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "-d", dsn, str(source / DATA)])
    _run(["pg_restore", "--data-only", "--no-owner", "-d", dsn, str(keys)])
    media = Path(settings.media_dir)
    media.mkdir(parents=True, exist_ok=True)
    with tarfile.open(source / MEDIA, "r:gz") as archive:
        archive.extractall(media, filter="data")
    return asyncio.run(_settle(settings))


async def _check_fresh(url: str) -> None:
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        has_events = await conn.fetchval("SELECT to_regclass('public.events') IS NOT NULL")
        if has_events and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)"):
            raise BackupError("the database already has events: restore into a fresh one")
    finally:
        await conn.close()


async def _settle(settings: Settings) -> dict[str, int]:
    """This code's migrations, the re-erasure, then the read models from the log."""
    await migrate(settings.database_url)
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            # Transaction ids of the server the keys came from mean nothing here (the key
            # sweeps compare them with this server's); the tombstones themselves stay.
            await conn.execute(
                "UPDATE customer_keys SET erased_xid = NULL WHERE erased_xid IS NOT NULL"
            )
            swept = await sweep_tombstones(conn)
        await install_privacy(settings, pool)
        rebuilt = await rebuild(pool)
        # pg_restore leaves the planner no statistics: gathered once for the whole database
        # rather than waiting for autovacuum (if it runs at all) to find the tables grown.
        await pool.execute("ANALYZE")
    finally:
        await pool.close()
    return {**swept, **{f"rebuilt {k}": v for k, v in rebuilt.items()}}
