"""Configuration: process environment first, then a `.env` file, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ENV_FILE = Path(os.environ.get("ENV_FILE", ".env"))


def read_env_file(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; blank lines and # comments ignored, quotes stripped."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class Settings:
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/whatsapp_bot"
    ingress_port: int = 8080
    dedup_port: int = 8081
    conversation_port: int = 8082
    outbound_port: int = 8083
    media_port: int = 8084
    webhook_relay_port: int = 8085
    whatsapp_app_secret: str = ""
    whatsapp_verify_token: str = ""
    whatsapp_access_token: str = ""
    whatsapp_api_url: str = "https://graph.facebook.com/v23.0"
    whatsapp_timeout: float = 8.0
    whatsapp_rate_per_second: float = 80.0
    openai_api_key: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = 15.0
    # Conversations waiting on the LLM at once (aiohttp's default would be 100).
    openai_max_connections: int = 1024
    bot_persona: str = (
        "You are a friendly, concise customer-service assistant for a small business "
        "on WhatsApp. Answer in the customer's language, in a few sentences."
    )
    history_turns: int = 10
    elevenlabs_api_key: str = ""
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    # A premade voice every ElevenLabs account has ("George"); any voice id of yours works.
    elevenlabs_voice_id: str = "JBFqnCBsd6RMkjVDRZzb"
    elevenlabs_model_id: str = "eleven_multilingual_v2"
    # Ogg/Opus: the format WhatsApp plays as a voice note, so no conversion is needed.
    elevenlabs_output_format: str = "opus_48000_64"
    elevenlabs_timeout: float = 15.0
    media_enabled: bool = True
    media_dir: str = "media"
    media_download_timeout: float = 30.0
    media_s3_bucket: str = ""
    media_s3_endpoint_url: str = ""
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str = ""
    media_s3_secret_access_key: str = ""
    media_s3_prefix: str = ""
    transcription_model: str = "whisper-1"
    transcription_timeout: float = 15.0
    dedup_queues: int = 4
    conversation_queues: int = 4
    outbound_queues: int = 4
    media_queues: int = 4
    prefetch: int = 64
    # Conversation's deliveries wait on the LLM, seconds each: more of them in flight per
    # queue, so that a slow LLM does not cap the conversations answered at once.
    conversation_prefetch: int = 256
    max_attempts: int = 5
    retry_delay_ms: int = 2000
    delivery_limit: int = 20
    max_body_bytes: int = 1_048_576
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 30.0
    # Webhook relay (services/webhook_relay): domain events to the business's CRMs.
    admin_token: str = ""  # bearer token of the relay's admin API; unset = no admin API
    webhook_timeout: float = 15.0
    webhook_retry_schedule: str = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
    webhook_retry_jitter: float = 0.2
    webhook_max_in_flight: int = 10  # per endpoint
    webhook_poll_interval: float = 0.2
    webhook_allow_http: bool = False
    webhook_allowed_networks: str = ""  # CIDRs exempt from the SSRF guard, e.g. 10.0.0.0/8
    webhook_secret_grace_seconds: float = 86400.0
    webhook_max_pause: float = 3600.0
    webhook_retention_days: float = 14.0
    log_level: str = "INFO"
    run_dir: str = ".run"
    # Niceness of every service but ingress when `make up` starts them: under load, ingress
    # (the webhook acks Meta times) gets the CPU first and the pipeline works in the gaps.
    # 0 = everyone equal.
    worker_nice: int = 5
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))


def _coerce(raw: str, default: object) -> object:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load_settings(env: dict[str, str] | None = None, env_file: Path | None = None) -> Settings:
    """Build Settings; the process environment wins over the .env file."""
    merged = read_env_file(env_file or Path(os.environ.get("ENV_FILE", str(DEFAULT_ENV_FILE))))
    merged.update(os.environ if env is None else env)
    base = Settings()
    kwargs: dict[str, object] = {}
    for name in Settings.__dataclass_fields__:
        if name == "extra":
            continue
        key = name.upper()
        if key in merged:
            kwargs[name] = _coerce(merged[key], getattr(base, name))
    return Settings(**kwargs, extra=merged)  # type: ignore[arg-type]
