"""`make up`'s decisions on a fresh machine (ops/preflight.py), driven with fake commands on
PATH (rabbitmq-plugins, sudo, apt-get, the setup script) and fake connection errors. Nothing
here touches the machine's servers: every command it may run is a fake in tmp_path."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiormq
import asyncpg
import pytest

from ops.preflight import (
    PLUGINS,
    SETUP_SCRIPT,
    Machine,
    Problems,
    SetupProblem,
    Unreachable,
    broker_problem,
    database_problem,
    declare_with_plugins,
    ensure_servers,
    is_loopback,
    redact,
)

LOCAL_AMQP = "amqp://guest:s3cret@127.0.0.1:5672/"
LOCAL_DB = "postgresql://postgres:s3cret@127.0.0.1:5432/whatsapp_bot"
NO_PLUGIN = aiormq.exceptions.ConnectionCommandInvalid(
    "COMMAND_INVALID - unknown exchange type 'x-consistent-hash'"
)


# `sudo -n CMD...` runs CMD (given by absolute path: the fake PATH holds only the fakes).
SUDO_WITHOUT_PASSWORD = 'shift; [ "$1" = true ] && exit 0; exec "$@"'


class Bin:
    """A directory of fake commands; each call is appended to calls.log."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "bin"
        self.dir.mkdir()
        self.log = root / "calls.log"

    def add(self, name: str, body: str = "exit 0") -> Path:
        path = self.dir / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def machine(self, *, root: bool = True, debian: bool = True) -> Machine:
        return Machine(path=str(self.dir), is_root=root, debian=debian)


@pytest.fixture
def bin(tmp_path: Path) -> Bin:
    return Bin(tmp_path)


class Said(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def declaring(*outcomes: BaseException | None) -> tuple[Callable[[], Awaitable[None]], list[int]]:
    """A topology declaration that fails (or not) as told, call after call."""
    calls: list[int] = []

    async def declare() -> None:
        calls.append(1)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if outcome is not None:
            raise outcome

    return declare, calls


def one_line(problem: SetupProblem) -> str:
    [line] = problem.lines
    assert "\n" not in line and "Traceback" not in line
    assert "s3cret" not in line  # URLs are shown without their password
    return line


# --- the consistent-hash exchange -------------------------------------------------------


async def test_a_local_broker_without_the_plugin_gets_it_enabled_and_up_goes_on(bin: Bin) -> None:
    bin.add("rabbitmq-plugins")
    declare, calls = declaring(NO_PLUGIN, None)
    said = Said()
    await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(root=True), said)
    assert bin.calls() == [f"rabbitmq-plugins enable {' '.join(PLUGINS)}"]
    assert len(calls) == 2  # declared again once the plugin was on
    assert "rabbitmq_consistent_hash_exchange" in said[0]


async def test_without_root_the_plugins_are_enabled_through_passwordless_sudo(bin: Bin) -> None:
    tool = bin.add("rabbitmq-plugins")
    bin.add("sudo", SUDO_WITHOUT_PASSWORD)
    declare, _ = declaring(NO_PLUGIN, None)
    await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(root=False), Said())
    assert bin.calls() == [
        "sudo -n true",
        f"sudo -n {tool} enable {' '.join(PLUGINS)}",
        f"rabbitmq-plugins enable {' '.join(PLUGINS)}",
    ]


async def test_without_rights_one_line_names_the_plugin_and_the_command(bin: Bin) -> None:
    bin.add("rabbitmq-plugins")
    bin.add("sudo", "exit 1")  # a password would be needed
    declare, calls = declaring(NO_PLUGIN)
    with pytest.raises(SetupProblem) as problem:
        await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(root=False), Said())
    line = one_line(problem.value)
    assert "rabbitmq_consistent_hash_exchange" in line
    assert "`sudo rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" in line
    assert bin.calls() == ["sudo -n true"]  # asked, never ran the tool
    assert len(calls) == 1


async def test_without_rabbitmq_plugins_on_this_machine_one_line(bin: Bin) -> None:
    declare, _ = declaring(NO_PLUGIN)
    with pytest.raises(SetupProblem) as problem:
        await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(root=True), Said())
    assert "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" in one_line(problem.value)


async def test_a_remote_broker_is_never_changed_from_here(bin: Bin) -> None:
    bin.add("rabbitmq-plugins")
    declare, _ = declaring(NO_PLUGIN)
    with pytest.raises(SetupProblem) as problem:
        await declare_with_plugins(
            "amqp://bot:s3cret@rabbit.internal:5672/bot", declare, bin.machine(), Said()
        )
    line = one_line(problem.value)
    assert "amqp://bot@rabbit.internal:5672/bot" in line and "on the broker's host" in line
    assert bin.calls() == []


async def test_a_failing_rabbitmq_plugins_is_one_line_with_its_error(bin: Bin) -> None:
    bin.add("rabbitmq-plugins", 'echo "Error: unable to perform an operation on node" >&2; exit 2')
    declare, _ = declaring(NO_PLUGIN)
    with pytest.raises(SetupProblem) as problem:
        await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(), Said())
    line = one_line(problem.value)
    assert "unable to perform an operation on node" in line
    assert "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" in line


async def test_a_plugin_that_stays_missing_is_one_line(bin: Bin) -> None:
    bin.add("rabbitmq-plugins")
    declare, calls = declaring(NO_PLUGIN, NO_PLUGIN)
    with pytest.raises(SetupProblem) as problem:
        await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(), Said())
    assert "even after enabling it" in one_line(problem.value)
    assert len(calls) == 2


async def test_other_declaration_errors_are_not_mistaken_for_the_plugin(bin: Bin) -> None:
    bin.add("rabbitmq-plugins")
    other = aiormq.exceptions.ChannelPreconditionFailed("PRECONDITION_FAILED - inequivalent arg")
    declare, _ = declaring(other)
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await declare_with_plugins(LOCAL_AMQP, declare, bin.machine(), Said())
    assert bin.calls() == []


# --- installing and starting the servers ------------------------------------------------

REFUSED = {
    "RabbitMQ": (LOCAL_AMQP, Unreachable("cannot reach RabbitMQ at ... (connection refused)")),
    "PostgreSQL": (LOCAL_DB, Unreachable("cannot reach PostgreSQL at ... (connection refused)")),
}


def probing(*rounds: Problems) -> tuple[Callable[[str, str], Awaitable[Problems]], list[int]]:
    calls: list[int] = []

    async def probe(_amqp: str, _db: str) -> Problems:
        calls.append(1)
        return rounds[min(len(calls), len(rounds)) - 1]

    return probe, calls


async def test_local_servers_missing_on_debian_as_root_are_set_up_by_the_script(bin: Bin) -> None:
    bin.add("apt-get")
    script = bin.add("setup-servers.sh")
    probe, calls = probing(REFUSED, {})
    said = Said()
    await ensure_servers(LOCAL_AMQP, LOCAL_DB, bin.machine(root=True), said, script, probe)
    assert bin.calls() == ["setup-servers.sh "]
    assert len(calls) == 2  # checked again after the script
    assert "RabbitMQ and PostgreSQL" in said[0]


async def test_with_sudo_the_script_runs_through_it(bin: Bin) -> None:
    bin.add("apt-get")
    bin.add("sudo", SUDO_WITHOUT_PASSWORD)
    script = bin.add("setup-servers.sh")
    probe, _ = probing({"PostgreSQL": REFUSED["PostgreSQL"]}, {})
    await ensure_servers(LOCAL_AMQP, LOCAL_DB, bin.machine(root=False), Said(), script, probe)
    assert bin.calls()[-2:] == [f"sudo -n {script}", "setup-servers.sh "]


@pytest.mark.parametrize(
    ("root", "debian", "sudo_body", "hint"),
    [
        (True, False, None, "install it with your system's package manager"),
        (False, True, "exit 1", "run `make up` as root or with sudo"),
        (False, True, None, "run `make up` as root or with sudo"),
    ],
)
async def test_elsewhere_one_line_per_server_says_what_to_install(
    bin: Bin, root: bool, debian: bool, sudo_body: str | None, hint: str
) -> None:
    bin.add("apt-get")
    if sudo_body is not None:
        bin.add("sudo", sudo_body)
    script = bin.add("setup-servers.sh")
    probe, _ = probing(REFUSED)
    with pytest.raises(SetupProblem) as problem:
        await ensure_servers(
            LOCAL_AMQP, LOCAL_DB, bin.machine(root=root, debian=debian), Said(), script, probe
        )
    rabbit, postgres = problem.value.lines
    assert rabbit.startswith("RabbitMQ is not installed here") and hint in rabbit
    assert "rabbitmq_consistent_hash_exchange" in rabbit
    assert postgres.startswith("PostgreSQL is not installed here") and hint in postgres
    assert "setup-servers.sh " not in bin.calls()


async def test_an_installed_but_stopped_server_without_rights_says_start_it(bin: Bin) -> None:
    bin.add("rabbitmq-server")
    probe, _ = probing({"RabbitMQ": REFUSED["RabbitMQ"]})
    with pytest.raises(SetupProblem) as problem:
        await ensure_servers(
            LOCAL_AMQP, LOCAL_DB, bin.machine(root=False), Said(), bin.dir / "none", probe
        )
    assert one_line(problem.value).startswith("RabbitMQ is installed but not running here")


async def test_remote_servers_are_reported_not_installed_here(bin: Bin) -> None:
    bin.add("apt-get")
    script = bin.add("setup-servers.sh")
    remote = "postgresql://bot:s3cret@db.internal:5432/bot"
    line = "cannot reach PostgreSQL at postgresql://bot@db.internal:5432/bot (unknown host)"
    probe, _ = probing({"PostgreSQL": (remote, Unreachable(line))})
    with pytest.raises(SetupProblem) as problem:
        await ensure_servers(LOCAL_AMQP, remote, bin.machine(), Said(), script, probe)
    assert one_line(problem.value) == line
    assert bin.calls() == []


async def test_a_local_server_down_and_the_other_refusing_its_login_are_both_reported(
    bin: Bin,
) -> None:
    """No setup would fix a wrong password: say both, run nothing."""
    bin.add("apt-get")
    script = bin.add("setup-servers.sh")
    wrong = SetupProblem("PostgreSQL at ... refused the password of postgres: check DATABASE_URL")
    probe, _ = probing({"RabbitMQ": REFUSED["RabbitMQ"], "PostgreSQL": (LOCAL_DB, wrong)})
    with pytest.raises(SetupProblem) as problem:
        await ensure_servers(LOCAL_AMQP, LOCAL_DB, bin.machine(), Said(), script, probe)
    assert len(problem.value.lines) == 2
    assert bin.calls() == []


async def test_a_failing_script_is_one_line(bin: Bin) -> None:
    bin.add("apt-get")
    script = bin.add("setup-servers.sh", "exit 3")
    probe, _ = probing(REFUSED)
    with pytest.raises(SetupProblem) as problem:
        await ensure_servers(LOCAL_AMQP, LOCAL_DB, bin.machine(), Said(), script, probe)
    assert "failed (exit 3)" in one_line(problem.value)


async def test_nothing_wrong_means_nothing_run(bin: Bin) -> None:
    bin.add("apt-get")
    script = bin.add("setup-servers.sh")
    probe, calls = probing({})
    await ensure_servers(LOCAL_AMQP, LOCAL_DB, bin.machine(), Said(), script, probe)
    assert bin.calls() == [] and len(calls) == 1


# --- one line per connection error ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "unreachable", "says"),
    [
        (aiormq.exceptions.AMQPConnectionError(111, "Connect call failed"), True, "refused"),
        (aiormq.exceptions.AMQPConnectionError(-2, "Name or service not known"), True, "unknown"),
        (TimeoutError(), True, "timed out"),
        (
            aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused"),
            False,
            "check the user and password in AMQP_URL",
        ),
        (aiormq.exceptions.InvalidFrameError("Connection.Close"), False, "vhost"),
    ],
)
def test_broker_errors_are_one_line_without_the_password(
    error: BaseException, unreachable: bool, says: str
) -> None:
    problem = broker_problem(error, LOCAL_AMQP)
    line = one_line(problem)
    assert isinstance(problem, Unreachable) is unreachable
    assert "amqp://guest@127.0.0.1:5672/" in line and says in line


@pytest.mark.parametrize(
    ("error", "unreachable", "says"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True, "connection refused"),
        (OSError(-2, "Name or service not known"), True, "check DATABASE_URL"),
        (asyncpg.InvalidPasswordError("password authentication failed"), False, "password"),
        (
            asyncpg.InvalidAuthorizationSpecificationError("no pg_hba.conf entry"),
            False,
            "pg_hba.conf",
        ),
        (asyncpg.InsufficientPrivilegeError("permission denied"), False, "CREATEDB"),
    ],
)
def test_database_errors_are_one_line_without_the_password(
    error: BaseException, unreachable: bool, says: str
) -> None:
    problem = database_problem(error, LOCAL_DB)
    line = one_line(problem)
    assert isinstance(problem, Unreachable) is unreachable
    assert "postgresql://postgres@127.0.0.1:5432/whatsapp_bot" in line and says in line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest@127.0.0.1:5672/"),
        ("postgresql://postgres@127.0.0.1/db", "postgresql://postgres@127.0.0.1/db"),
        (
            "postgresql://u:p%40ss@[::1]:5432/db?sslmode=require",
            "postgresql://u@[::1]:5432/db?sslmode=require",
        ),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", True),
        ("amqp://localhost/", True),
        ("postgresql://postgres@[::1]/db", True),
        ("amqp://rabbitmq:5672/", False),
        ("amqp://10.0.0.5/", False),
    ],
)
def test_is_loopback(url: str, local: bool) -> None:
    assert is_loopback(url) is local


def test_the_search_path_never_includes_the_current_directory() -> None:
    assert "" not in Machine.this({"PATH": "/bin::/usr/bin:"}).path.split(":")
    assert "" not in Machine.this({}).path.split(":")


# --- the setup script's own refusals (it stops before doing anything) -------------------


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(SETUP_SCRIPT), *args],
        env={"PATH": "/nonexistent"},  # no apt-get, no servers' tools
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_setup_script_refuses_an_unknown_option() -> None:
    done = run_script("--everything")
    assert done.returncode == 64 and "usage:" in done.stderr


def test_the_setup_script_without_apt_get_says_what_to_install_in_one_line() -> None:
    done = run_script()
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "RabbitMQ 3.10+" in line and "PostgreSQL 13+" in line
    assert done.stdout == ""  # nothing installed, nothing started
