"""A PostgreSQL primary and a streaming replica of our own, for the fail-over test.

Debian's PostgreSQL binaries (initdb, pg_ctl, pg_basebackup), run as the `postgres` user on
data directories under a temporary folder and ports of their own, with synchronous
replication (`synchronous_standby_names = '*'`, `synchronous_commit = on`): a commit returns
once the replica has it. The machine's main cluster (5432) is never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

USER = "postgres"


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def available() -> bool:
    return bindir() is not None and shutil.which("runuser") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgPair:
    root: Path
    synchronous: bool = True
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.bin = bindir()
        assert self.bin is not None, "PostgreSQL binaries not found"
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, USER, USER)
        self.primary = self.root / "primary"
        self.replica = self.root / "replica"

    def url(self, database: str) -> str:
        """Both hosts; asyncpg takes the one that accepts writes."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.replica_port}"
            f"/{database}?target_session_attrs=read-write"
        )

    def primary_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> str:
        result = subprocess.run(
            ["runuser", "-u", USER, "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stdout}{result.stderr}")
        return result.stdout

    def _conf(self, data: Path, port: int, synchronous: bool) -> None:
        settings = {
            "port": str(port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "hot_standby": "on",
            "max_connections": "200",
            "synchronous_commit": "on",
            "synchronous_standby_names": "'*'" if synchronous else "''",
            "fsync": "on",
        }
        with (data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.primary), "-A", "trust", "-U", USER)
        self._conf(self.primary, self.primary_port, self.synchronous)
        self._pg_ctl(self.primary, "start")
        self._run(
            str(self.bin / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            USER,
            "-D",
            str(self.replica),
            "-R",  # standby.signal and primary_conninfo: a streaming replica
            "-X",
            "stream",
        )
        # Promoted, the replica is alone: waiting for a standby of its own would block
        # every commit.
        self._conf(self.replica, self.replica_port, synchronous=False)
        self._pg_ctl(self.replica, "start")
        self.wait_streaming()

    def _pg_ctl(self, data: Path, action: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", action)

    def _psql(self, port: int, sql: str) -> str:
        return self._run(
            str(self.bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            USER,
            "-Atc",
            sql,
            "postgres",
        ).strip()

    def wait_streaming(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self._psql(self.primary_port, "SELECT count(*) FROM pg_stat_replication") != "1":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica never streamed")
            time.sleep(0.5)

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend of it: no shutdown, a crash."""
        pid = int((self.primary / "postmaster.pid").read_text().split()[0])
        children = [
            int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _ppid(p) == pid
        ]
        for victim in (pid, *children):
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def promote(self) -> None:
        self._pg_ctl(self.replica, "promote")

    def stop(self) -> None:
        for data in (self.primary, self.replica):
            if (data / "postmaster.pid").exists():
                try:
                    self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
                except RuntimeError:
                    pass

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _ppid(stat: Path) -> int | None:
    try:
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
