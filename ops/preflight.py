"""Before `make up` starts anything: is the broker there, with the consistent-hash exchange,
and the database? Each known setup problem is one line naming the URL (never its password)
and what to check, not a traceback. On this machine, with the rights to, it fixes what it
can: a local RabbitMQ or PostgreSQL that is missing or stopped (deploy/setup-servers.sh), the
broker's plugins (rabbitmq-plugins)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
import asyncpg

from shared.broker.cluster import split_urls
from shared.stack import ROOT

PLUGINS = ("rabbitmq_consistent_hash_exchange", "rabbitmq_prometheus")
ENABLE_PLUGINS = f"sudo rabbitmq-plugins enable {' '.join(PLUGINS)}"
SETUP_SCRIPT = ROOT / "deploy" / "setup-servers.sh"
CONNECT_TIMEOUT = 5.0
# Where Debian puts the servers' tools; a normal user's PATH often lacks them.
ADMIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


class SetupProblem(Exception):
    """A known setup problem: a line per problem for the operator, and no traceback."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Unreachable(SetupProblem):
    """Nothing answers at the server's address: it may be ours to install or start."""


Problems = dict[str, tuple[str, SetupProblem]]  # server -> (its URL, what is wrong)


def redact(url: str) -> str:
    """The URL without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def is_loopback(url: str) -> bool:
    if url.startswith("amqp") and "," in url:  # a cluster's nodes: ours when all are
        return all(is_loopback(node) for node in split_urls(url))
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Machine:
    """What this machine lets `make up` do. The tests pass their own, with fake tools."""

    path: str  # where to look for rabbitmq-plugins, sudo, apt-get, the servers
    is_root: bool
    debian: bool

    @classmethod
    def this(cls, environ: Mapping[str, str] | None = None) -> Machine:
        env = os.environ if environ is None else environ
        return cls(
            # No empty entry: that would search the current directory.
            path=":".join(p for p in [*env.get("PATH", "").split(":"), ADMIN_PATH] if p),
            is_root=os.geteuid() == 0,
            debian=Path("/etc/debian_version").exists(),
        )

    def which(self, command: str) -> str | None:
        return shutil.which(command, path=self.path)

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PATH": self.path},
        )

    def as_admin(self, argv: list[str]) -> list[str] | None:
        """argv as root: itself when we are root, through sudo when sudo needs no password,
        None when we have no such rights."""
        if self.is_root:
            return argv
        sudo = self.which("sudo")
        if sudo is None:
            return None
        try:
            if self.run([sudo, "-n", "true"], timeout=10).returncode != 0:
                return None
        except (OSError, subprocess.SubprocessError):
            return None
        return [sudo, "-n", *argv]

    def can_set_up_servers(self) -> bool:
        return self.debian and self.which("apt-get") is not None


# --- the broker -------------------------------------------------------------------------


def broker_problem(exc: BaseException, url: str) -> SetupProblem:
    shown = redact(url)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return SetupProblem(
            f"RabbitMQ at {shown} refused the login: check the user and password in AMQP_URL"
        )
    if isinstance(exc, aiormq.exceptions.ProtocolSyntaxError | aiormq.exceptions.ChannelClosed):
        # The broker closes the connection at Connection.Open for an unknown vhost.
        return SetupProblem(
            f"RabbitMQ at {shown} closed the connection at login: check that the vhost in "
            "AMQP_URL exists and that the user may use it"
        )
    reason = _os_reason(exc)
    if reason is None:
        return SetupProblem(f"RabbitMQ at {shown}: {type(exc).__name__}: {exc}")
    return Unreachable(
        f"cannot reach RabbitMQ at {shown} ({reason}): is it running? check AMQP_URL"
    )


async def check_broker(url: str) -> None:
    """One node of AMQP_URL (several, comma-separated, for a cluster) takes the login, or
    the first node's problem."""
    first: SetupProblem | None = None
    for node in split_urls(url):
        try:
            connection = await asyncio.wait_for(
                aio_pika.connect(node, timeout=CONNECT_TIMEOUT), CONNECT_TIMEOUT + 1
            )
        except Exception as exc:
            first = first or broker_problem(exc, node)
            continue
        with contextlib.suppress(Exception):
            await connection.close()
        return
    assert first is not None
    raise first


def missing_exchange_type(exc: BaseException, kind: str = "x-consistent-hash") -> bool:
    """RabbitMQ without the plugin refuses the declaration and closes the connection."""
    return isinstance(exc, aiormq.exceptions.AMQPError) and (
        f"unknown exchange type '{kind}'" in str(exc)
    )


async def declare_with_plugins(
    url: str, declare: Callable[[], Awaitable[None]], machine: Machine, say: Callable[[str], None]
) -> None:
    """Declare the topology; a broker without the consistent-hash exchange gets its plugins
    enabled when it is ours (loopback) and we may, else one line says what to run."""
    try:
        await declare()
        return
    except Exception as exc:
        if not missing_exchange_type(exc):
            raise
    shown = ", ".join(redact(node) for node in split_urls(url))
    lacks = (
        f"RabbitMQ at {shown} lacks the x-consistent-hash exchange type (plugin "
        "rabbitmq_consistent_hash_exchange)"
    )
    tool = machine.which("rabbitmq-plugins") if is_loopback(url) else None
    argv = await asyncio.to_thread(machine.as_admin, [tool, "enable", *PLUGINS]) if tool else None
    if argv is None:
        where = "" if is_loopback(url) else " on the broker's host"
        raise SetupProblem(f"{lacks}: run `{ENABLE_PLUGINS}`{where}")
    say(f"enabling RabbitMQ plugins: {' '.join(PLUGINS)}")
    try:
        done = await asyncio.to_thread(machine.run, argv, 120)
        failed = done.returncode != 0
        detail = _first_line(done.stderr or done.stdout) or f"exit {done.returncode}"
    except (OSError, subprocess.SubprocessError) as exc:
        failed, detail = True, str(exc)
    if failed:
        raise SetupProblem(
            f"{lacks}, and `{' '.join(argv)}` failed ({detail}): run `{ENABLE_PLUGINS}`"
        )
    try:
        await declare()
    except Exception as exc:
        if missing_exchange_type(exc):
            raise SetupProblem(f"{lacks} even after enabling it: run `{ENABLE_PLUGINS}`") from None
        raise


# --- the database -----------------------------------------------------------------------


def database_problem(exc: BaseException, url: str) -> SetupProblem:
    shown = redact(url)
    user = urlsplit(url).username or "(default user)"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return SetupProblem(
            f"PostgreSQL at {shown} refused the password of {user}: check DATABASE_URL"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return SetupProblem(
            f"PostgreSQL at {shown} refused {user} ({exc}): check the user in DATABASE_URL "
            "and the server's pg_hba.conf"
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return SetupProblem(
            f"PostgreSQL at {shown}: {user} may not create the database ({exc}): create it, "
            "or grant CREATEDB"
        )
    reason = _os_reason(exc)
    if reason is None:
        return SetupProblem(f"PostgreSQL at {shown}: {type(exc).__name__}: {exc}")
    return Unreachable(
        f"cannot reach PostgreSQL at {shown} ({reason}): is it running? check DATABASE_URL"
    )


async def check_database(url: str) -> None:
    try:
        connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except asyncpg.InvalidCatalogNameError:
        return  # the server answers; `make up` creates the database
    except Exception as exc:
        raise database_problem(exc, url) from None
    await connection.close()


# --- the servers ------------------------------------------------------------------------


async def ensure_servers(
    amqp_url: str,
    database_url: str,
    machine: Machine,
    say: Callable[[str], None],
    script: Path = SETUP_SCRIPT,
    probe: Callable[[str, str], Awaitable[Problems]] | None = None,
) -> None:
    """Both servers answer, or SetupProblem. A local one that does not answer is installed
    or started by `script` when this is Debian/Ubuntu and we are root or may sudo.
    `probe` finds what is wrong with each (the tests fake it)."""
    probe = probe or server_problems
    problems = await probe(amqp_url, database_url)
    local = [
        (what, p)
        for what, (url, p) in problems.items()
        if isinstance(p, Unreachable) and is_loopback(url)
    ]
    if not problems:
        return
    if len(local) < len(problems):
        _raise(problems)  # one of them no setup here would fix: say them all
    argv = (
        await asyncio.to_thread(machine.as_admin, [str(script)])
        if machine.can_set_up_servers()
        else None
    )
    if argv is None:
        raise SetupProblem(*(_install_hint(what, machine) for what, _ in local))
    say(
        f"{' and '.join(what for what, _ in local)} not running here: setting up with "
        f"{script.relative_to(ROOT) if script.is_relative_to(ROOT) else script} "
        "(apt-get, may take minutes)"
    )
    try:
        code = await asyncio.to_thread(
            subprocess.run, argv, check=False, env={**os.environ, "PATH": machine.path}
        )
    except OSError as exc:
        raise SetupProblem(f"cannot run {script}: {exc}") from None
    if code.returncode != 0:
        raise SetupProblem(f"{script} failed (exit {code.returncode}); its output is above")
    _raise(await probe(amqp_url, database_url))


async def check_servers(amqp_url: str, database_url: str) -> None:
    """Both servers answer, or SetupProblem with a line for each that does not."""
    _raise(await server_problems(amqp_url, database_url))


async def server_problems(amqp_url: str, database_url: str) -> Problems:
    """What stops each server from being used: {"RabbitMQ": (url, problem), ...}."""
    problems: Problems = {}
    for what, url, check in (
        ("RabbitMQ", amqp_url, check_broker),
        ("PostgreSQL", database_url, check_database),
    ):
        try:
            await check(url)
        except SetupProblem as problem:
            problems[what] = (url, problem)
    return problems


def _raise(problems: Problems) -> None:
    if problems:
        raise SetupProblem(*(line for _, p in problems.values() for line in p.lines))


def _install_hint(what: str, machine: Machine) -> str:
    installed = machine.which("rabbitmq-server" if what == "RabbitMQ" else "pg_ctlcluster")
    if what == "RabbitMQ":
        need = "RabbitMQ 3.10+ with the plugins " + " and ".join(PLUGINS)
    else:
        need = (
            "PostgreSQL 13+, with a passwordless `postgres` user on 127.0.0.1 or a password "
            "in DATABASE_URL"
        )
    if installed:
        return f"{what} is installed but not running here: start it ({need})"
    how = (
        "on Debian/Ubuntu run `make up` as root or with sudo, or `sudo deploy/setup-servers.sh`"
        if machine.debian
        else "install it with your system's package manager"
    )
    return f"{what} is not installed here: {how} ({need}), or point the URL elsewhere"


def _os_reason(exc: BaseException) -> str | None:
    """Why a connection did not get through, if it is the network's or the server's absence."""
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, aiormq.exceptions.AMQPConnectionError) and exc.args:
        code = exc.args[0]
        if code == 111:
            return "connection refused"
        if code in (-2, -3, -5):
            return "unknown host"
        if isinstance(code, int):
            return os.strerror(code) if code > 0 else str(exc.args[-1])
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def quiet_client_logs() -> None:
    """aiormq logs a failed connection with a traceback; the CLI reports it in one line."""
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
