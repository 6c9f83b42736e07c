"""The run dir (.run/: logs of customers' traffic, pid files) is ours only: 0700, its pid and
log files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import load_settings
from shared.stack import Stack, _private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loosest_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def stack_at(run_dir: Path) -> Stack:
    return Stack(load_settings(env={"RUN_DIR": str(run_dir)}, env_file=run_dir / "none"))


def test_a_new_run_dir_is_0700(tmp_path: Path) -> None:
    run_dir = tmp_path / "a" / ".run"
    stack_at(run_dir).make_run_dir()
    assert mode(run_dir) == 0o700


def test_an_older_run_dir_of_ours_is_tightened(tmp_path: Path) -> None:
    run_dir = tmp_path / ".run"
    run_dir.mkdir()
    run_dir.chmod(0o755)
    stack_at(run_dir).make_run_dir()
    assert mode(run_dir) == 0o700


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    """RUN_DIR=/tmp must not lock everyone else out of /tmp."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    stack_at(shared).make_run_dir()
    assert mode(shared) == 0o1777


def test_pid_and_log_files_are_created_0600_and_older_ones_tightened(tmp_path: Path) -> None:
    fresh = tmp_path / "ingress.log"
    os.close(_private_file(fresh, os.O_APPEND))
    assert mode(fresh) == 0o600
    older = tmp_path / "ingress.pid"
    older.write_text("1")
    older.chmod(0o644)
    os.close(_private_file(older, os.O_TRUNC))
    assert mode(older) == 0o600 and older.read_text() == ""
