"""`make up`, `make demo`, `make status`, `make down` as an operator runs them (`python -m ops`),
on a vhost and database of their own, with ENV_FILE pointing away from the checkout's .env:
every command reads that file, and what `up` writes there is what `demo` signs with."""

from __future__ import annotations

import http.client
import os
import re
import stat
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import read_env_file
from shared.services import DECLARED
from shared.stack import ROOT
from tests.e2e.harness import free_port
from tests.support.infra import Infra, start_infra

# What a developer's shell might carry that would hide the file's role.
CLEARED = (
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "ADMIN_TOKEN",
    "OPENAI_API_KEY",
    "CONSOLE_PASSWORD",
)


def console_sign_in(base: str, email: str, password: str) -> int:
    """Sign in through the console's form as a browser does; the status of the POST (303
    to the inbox when it worked)."""
    with urllib.request.urlopen(base + "/console/sign-in", timeout=10) as page:
        cookie = page.headers["Set-Cookie"].split(";")[0]
        token = re.search(r'name="login_token" value="([^"]+)"', page.read().decode())
    assert token is not None
    form = urllib.parse.urlencode(
        {"email": email, "password": password, "login_token": token.group(1)}
    ).encode()
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/console/sign-in",
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
        )
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def own_infra() -> Iterator[Infra]:
    # Not the session's vhost: these services would compete with the e2e stack's consumers.
    infra = start_infra()
    try:
        yield infra
    finally:
        infra.cleanup()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_up_demo_status_down_follow_env_file(own_infra: Infra, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ENV_FILE": "conf/bot.env",  # relative to where the operator is
            "RUN_DIR": str(run_dir),
            "AMQP_URL": own_infra.amqp_url,
            "DATABASE_URL": own_infra.database_url,
            "WHATSAPP_ACCESS_TOKEN": "",  # dry run: nothing leaves for Meta
            **{spec.port_variable: str(free_port()) for spec in DECLARED},
        }
    )

    def ops(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    env_file = tmp_path / "conf" / "bot.env"
    try:
        up = ops("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"to {env_file}" in up.stdout
        assert "broker topology declared" in up.stdout
        assert mode(env_file) == 0o600
        assert not (ROOT / "conf").exists()
        # The console's admin, with the generated password, printed with the address.
        password = read_env_file(env_file)["CONSOLE_PASSWORD"]
        api = f"http://127.0.0.1:{env['API_PORT']}"
        assert f"the console: {api}/console/ as admin@localhost, password {password}" in up.stdout
        assert console_sign_in(api, "admin@localhost", password) == 303
        assert console_sign_in(api, "admin@localhost", password + "x") == 401
        assert mode(run_dir) == 0o700
        for spec in DECLARED:
            assert mode(run_dir / f"{spec.name}.pid") == 0o600
            assert mode(run_dir / f"{spec.name}.log") == 0o600

        # The services read the generated file too: ingress accepts what demo signs with it.
        demo = ops("demo", "--text", "hello from ops")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "ingress answered 200" in demo.stdout and "bot:" in demo.stdout

        status = ops("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert [line.split()[:2] for line in status.stdout.splitlines()] == [
            [spec.name, "ready"] for spec in DECLARED
        ]

        again = ops("up")
        assert again.returncode == 0 and "wrote" not in again.stdout  # secrets kept
    finally:
        down = ops("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    status = ops("status")
    assert status.returncode == 1 and status.stdout.count("not running") == len(DECLARED)


def test_demo_against_nothing_is_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENV_FILE": str(tmp_path / "absent.env"),
        "INGRESS_PORT": str(free_port()),
        "WHATSAPP_APP_SECRET": "x",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ops", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("cannot reach ingress at http://127.0.0.1:") and "make up" in line
