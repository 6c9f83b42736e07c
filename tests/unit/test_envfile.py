"""The .env `make up` fills in (ops/envfile.py): where it is, and each rule of the one
function that writes generated values."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ops import envfile
from ops.envfile import GENERATED, ensure_env_file, env_file_path
from shared.config import load_settings, read_env_file
from shared.stack import ROOT

NAMES = list(GENERATED)  # the App Secret, verify token, ADMIN_TOKEN, MASTER_KEY, CONSOLE_PASSWORD


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_first_run_writes_every_generated_value_and_the_services_read_them(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    assert ensure_env_file(env, environ={}) == NAMES
    values = read_env_file(env)
    assert len(values["WHATSAPP_APP_SECRET"]) == 64
    assert values["WHATSAPP_VERIFY_TOKEN"] and len(values["ADMIN_TOKEN"]) >= 32
    # Where Meta's and OpenAI's keys go, left empty for the operator.
    assert values["WHATSAPP_ACCESS_TOKEN"] == "" and values["OPENAI_API_KEY"] == ""
    settings = load_settings(env={}, env_file=env)
    assert settings.whatsapp_app_secret == values["WHATSAPP_APP_SECRET"]
    assert settings.admin_token == values["ADMIN_TOKEN"]


def test_values_are_written_once_never_rotated(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    ensure_env_file(env, environ={})
    before = env.read_text()
    assert ensure_env_file(env, environ={}) == []
    assert env.read_text() == before


def test_each_missing_value_is_written_also_when_others_are_set(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("OPENAI_MODEL=my-model\nWHATSAPP_APP_SECRET=from-meta")  # no final newline
    assert ensure_env_file(env, environ={}) == [
        "WHATSAPP_VERIFY_TOKEN",
        "ADMIN_TOKEN",
        "MASTER_KEY",
        "CONSOLE_PASSWORD",
    ]
    values = read_env_file(env)
    assert values["OPENAI_MODEL"] == "my-model"
    assert values["WHATSAPP_APP_SECRET"] == "from-meta"
    assert values["WHATSAPP_VERIFY_TOKEN"] and values["ADMIN_TOKEN"]
    assert env.read_text().startswith("OPENAI_MODEL=my-model\nWHATSAPP_APP_SECRET=from-meta\n")


def test_an_older_empty_line_is_replaced_in_place_never_duplicated(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# mine\nADMIN_TOKEN=\nOPENAI_MODEL=m\nADMIN_TOKEN = \n"
        "WHATSAPP_APP_SECRET=s\nWHATSAPP_VERIFY_TOKEN=v\nMASTER_KEY=k\nCONSOLE_PASSWORD=p\n"
    )
    assert ensure_env_file(env, environ={}) == ["ADMIN_TOKEN"]
    lines = env.read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "# mine",
        "ADMIN_TOKEN",
        "OPENAI_MODEL",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "MASTER_KEY",
        "CONSOLE_PASSWORD",
    ]
    assert read_env_file(env)["ADMIN_TOKEN"]


def test_a_value_in_the_environment_counts_as_set(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    written = ensure_env_file(env, environ={"WHATSAPP_APP_SECRET": "from-env"})
    assert written == ["WHATSAPP_VERIFY_TOKEN", "ADMIN_TOKEN", "MASTER_KEY", "CONSOLE_PASSWORD"]
    assert "WHATSAPP_APP_SECRET" not in read_env_file(env)


def test_nothing_missing_means_no_file_is_written(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    assert ensure_env_file(env, environ=dict.fromkeys(NAMES, "set")) == []
    assert not env.exists()


def test_the_file_is_0600_and_never_exists_with_looser_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    env.write_text("OPENAI_MODEL=m\n")
    env.chmod(0o644)
    seen: list[int] = []
    real_replace = os.replace

    def replace(src: str, dst: Path) -> None:
        seen.append(mode(Path(src)))  # the secrets' file, the moment it becomes .env
        real_replace(src, dst)

    monkeypatch.setattr(envfile.os, "replace", replace)
    old_umask = os.umask(0)  # the loosest umask: created files would be 0666
    try:
        ensure_env_file(env, environ={})
        fresh = tmp_path / "fresh.env"
        ensure_env_file(fresh, environ={})
    finally:
        os.umask(old_umask)
    assert seen == [0o600, 0o600]
    assert mode(env) == 0o600 and mode(fresh) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "fresh.env"]  # no temp left


def test_an_existing_complete_file_is_made_0600_too(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("".join(f"{n}=x\n" for n in NAMES))
    env.chmod(0o644)
    assert ensure_env_file(env, environ={}) == []
    assert mode(env) == 0o600


def test_a_symlinked_env_file_is_written_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "secrets" / "bot.env"
    real.parent.mkdir()
    real.write_text("OPENAI_MODEL=m\n")
    link = tmp_path / ".env"
    link.symlink_to(real)
    ensure_env_file(link, environ={})
    assert link.is_symlink() and read_env_file(real)["WHATSAPP_APP_SECRET"]


def test_a_new_generated_variable_is_one_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    ensure_env_file(env, environ={})
    monkeypatch.setitem(GENERATED, "SOME_NEW_SECRET", lambda: "k" * 32)
    assert ensure_env_file(env, environ={}) == ["SOME_NEW_SECRET"]
    assert read_env_file(env)["SOME_NEW_SECRET"] == "k" * 32


def test_env_file_is_env_file_or_the_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert env_file_path({}) == ROOT / ".env"
    assert env_file_path({"ENV_FILE": ""}) == ROOT / ".env"
    assert env_file_path({"ENV_FILE": "/etc/bot/prod.env"}) == Path("/etc/bot/prod.env")
    monkeypatch.chdir(tmp_path)
    # Relative to where the command runs, made absolute for the services (cwd: the root).
    assert env_file_path({"ENV_FILE": "conf/bot.env"}) == tmp_path / "conf" / "bot.env"
