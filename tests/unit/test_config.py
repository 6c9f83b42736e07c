"""Settings: process environment > .env file > defaults; values coerced to the field types."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from shared.broker.topology import stages
from shared.config import OTHER_VARIABLES, SECTIONS, Settings, load_settings, read_env_file
from shared.services import DECLARED, SERVICES, STAGES


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
    assert (s.port_of("ingress"), s.breaker_reset_seconds, s.retry_delay_ms) == (9090, 0.5, 300)


def test_a_bad_number_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_settings(env={"HISTORY_TURNS": "lots"}, env_file=tmp_path / "none")


def test_every_declared_service_has_a_port_and_every_stage_a_queue_count(tmp_path: Path) -> None:
    s = load_settings(env={}, env_file=tmp_path / "none")
    assert {name: s.port_of(name) for name in SERVICES} == {d.name: d.port for d in DECLARED}
    assert len(set(s.ports.values())) == len(SERVICES), "two services on one port"
    assert {st: s.queues_of(st) for st in STAGES} == dict.fromkeys(STAGES, 4)
    assert stages(s).keys() == set(STAGES)
    assert Settings().ports == s.ports and Settings().queues == s.queues


def test_the_port_and_queue_variables_keep_their_names(tmp_path: Path) -> None:
    """INGRESS_PORT, DEDUP_QUEUES, ...: the names deployments already set."""
    env = {
        "INGRESS_PORT": "9100",
        "DEDUP_PORT": "9101",
        "CONVERSATION_PORT": "9102",
        "OUTBOUND_PORT": "9103",
        "MEDIA_PORT": "9104",
        "WEBHOOK_RELAY_PORT": "9105",
        "API_PORT": "9106",
        "CAMPAIGNS_PORT": "9107",
        "DEDUP_QUEUES": "2",
        "CONVERSATION_QUEUES": "3",
        "OUTBOUND_QUEUES": "5",
        "MEDIA_QUEUES": "1",
    }
    s = load_settings(env=env, env_file=tmp_path / "none")
    assert [s.port_of(n) for n in SERVICES] == [9100, 9101, 9102, 9103, 9104, 9105, 9106, 9107]
    assert {name: st.queue_count for name, st in stages(s).items()} == {
        "dedup": 2,
        "conversation": 3,
        "outbound": 5,
        "media": 1,
    }
    assert stages(s)["outbound"].queues == [f"outbound.{i}" for i in range(5)]


def test_a_port_from_the_env_file_counts_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MEDIA_PORT=9200\nMEDIA_QUEUES=6\n")
    s = load_settings(env={}, env_file=env_file)
    assert (s.port_of("media"), s.queues_of("media")) == (9200, 6)


def test_an_unknown_service_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="ingress"):
        Settings().port_of("ingres")


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("10.1.2.3", "http://10.1.2.3:8080"),
        ("::", "http://[::1]:8080"),
        ("::1", "http://[::1]:8080"),
    ],
)
def test_bind_address_defaults_to_loopback_and_urls_follow_it(
    tmp_path: Path, bind: str, url: str
) -> None:
    assert Settings().bind_address == "127.0.0.1"
    s = load_settings(env={"BIND_ADDRESS": bind}, env_file=tmp_path / "none")
    assert s.bind_address == bind
    assert s.url_of("ingress") == url


def test_every_setting_has_a_description() -> None:
    """One or two sentences next to each field, which docs/configuration.md is made from."""
    missing = [
        f.name for f in dataclasses.fields(Settings) if not f.metadata.get("doc", "").strip()
    ]
    assert missing == [], f"Settings fields without a description: {missing}"
    descriptions = {f.name: f.metadata["doc"] for f in dataclasses.fields(Settings)}
    descriptions |= {v.name: v.doc for v in OTHER_VARIABLES}
    for name, doc in descriptions.items():
        assert doc.endswith("."), name
        assert len(re.findall(r"[.!?]\s+[A-Z`(]", doc)) <= 1, f"{name}: more than two sentences"


def test_every_variable_read_is_in_a_section_of_the_reference() -> None:
    unplaced = [
        f.name
        for f in dataclasses.fields(Settings)
        if f.name != "extra" and f.metadata.get("section") not in SECTIONS
    ]
    assert unplaced == []
    assert all(v.section in SECTIONS for v in OTHER_VARIABLES)
