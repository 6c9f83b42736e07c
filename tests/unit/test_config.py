"""Settings: process environment > .env file > defaults; values coerced to the field types."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings, load_settings, read_env_file


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "\n".join(
            [
                "# a comment line",
                "",
                "   # an indented comment",
                "OPENAI_MODEL=from-dotenv",
                'BOT_PERSONA="You are Bob, a baker."',
                "WHATSAPP_VERIFY_TOKEN='single quoted'",
                "HISTORY_TURNS = 7",
                "WHATSAPP_TIMEOUT=2.5",
                "MAX_ATTEMPTS=9",
                "not a key value line",
                "#OPENAI_BASE_URL=http://127.0.0.1:1/commented-out",
                "OPENAI_API_KEY=dotenv-key",
            ]
        )
    )
    return path


def test_env_file_parsing(env_file: Path) -> None:
    values = read_env_file(env_file)
    assert values["BOT_PERSONA"] == "You are Bob, a baker."
    assert values["WHATSAPP_VERIFY_TOKEN"] == "single quoted"
    assert values["HISTORY_TURNS"] == "7"
    assert "OPENAI_BASE_URL" not in values
    assert not any(k.startswith("#") for k in values)
    assert "not a key value line" not in values


def test_missing_env_file_is_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "absent.env") == {}


def test_dotenv_over_defaults_with_types(env_file: Path) -> None:
    s = load_settings(env={}, env_file=env_file)
    assert s.openai_model == "from-dotenv"
    assert s.bot_persona == "You are Bob, a baker."
    assert s.whatsapp_verify_token == "single quoted"
    assert s.history_turns == 7 and isinstance(s.history_turns, int)
    assert s.whatsapp_timeout == 2.5 and isinstance(s.whatsapp_timeout, float)
    assert s.max_attempts == 9
    # Not in the file: the defaults.
    assert s.openai_base_url == Settings().openai_base_url
    assert s.prefetch == Settings().prefetch


def test_explicit_env_wins_over_dotenv(env_file: Path) -> None:
    s = load_settings(env={"OPENAI_MODEL": "from-env", "HISTORY_TURNS": "3"}, env_file=env_file)
    assert s.openai_model == "from-env"
    assert s.history_turns == 3
    assert s.openai_api_key == "dotenv-key"


def test_process_environment_wins_over_dotenv(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_MODEL", "from-process")
    monkeypatch.setenv("WHATSAPP_TIMEOUT", "11")
    monkeypatch.delenv("HISTORY_TURNS", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    s = load_settings(env_file=env_file)
    assert s.openai_model == "from-process"
    assert s.whatsapp_timeout == 11.0 and isinstance(s.whatsapp_timeout, float)
    assert s.history_turns == 7
    assert s.openai_api_key == "dotenv-key"


def test_int_and_float_coercion_from_env(tmp_path: Path) -> None:
    s = load_settings(
        env={"INGRESS_PORT": "9090", "BREAKER_RESET_SECONDS": "0.5", "RETRY_DELAY_MS": "300"},
        env_file=tmp_path / "none",
    )
    assert (s.ingress_port, s.breaker_reset_seconds, s.retry_delay_ms) == (9090, 0.5, 300)
    assert s.port_of("ingress") == 9090


def test_a_bad_number_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_settings(env={"HISTORY_TURNS": "lots"}, env_file=tmp_path / "none")
