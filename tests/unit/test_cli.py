from pathlib import Path

import pytest

from shared.cli import ensure_env_file
from shared.config import load_settings, read_env_file


def test_first_up_writes_fresh_secrets_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WHATSAPP_APP_SECRET", raising=False)
    env = tmp_path / ".env"

    assert ensure_env_file(env) is True
    first = read_env_file(env)
    assert len(first["WHATSAPP_APP_SECRET"]) == 64
    assert first["WHATSAPP_VERIFY_TOKEN"]
    # The services read what was written.
    settings = load_settings(env={}, env_file=env)
    assert settings.whatsapp_app_secret == first["WHATSAPP_APP_SECRET"]

    assert ensure_env_file(env) is False  # idempotent: never rotates secrets behind your back
    assert read_env_file(env) == first


def test_existing_settings_are_kept_and_secrets_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WHATSAPP_APP_SECRET", raising=False)
    env = tmp_path / ".env"
    env.write_text("OPENAI_MODEL=my-model")

    assert ensure_env_file(env) is True
    values = read_env_file(env)
    assert values["OPENAI_MODEL"] == "my-model"
    assert values["WHATSAPP_APP_SECRET"]


def test_a_secret_in_the_environment_means_no_file_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "from-the-environment")
    env = tmp_path / ".env"

    assert ensure_env_file(env) is False
    assert not env.exists()
