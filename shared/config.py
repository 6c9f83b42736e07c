"""Configuration: process environment first, then a `.env` file, then defaults.

Every setting is a field of `Settings`, read from the variable of its name upper-cased; the
per-service ports (`<NAME>_PORT`) and per-stage queue counts (`<STAGE>_QUEUES`) come from
shared/services.py. Each field carries its description and its section of
docs/configuration.md, which `python -m shared.configdoc` writes from them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from shared.services import (
    DECLARED,
    DEFAULT_QUEUES,
    STAGES,
    instance_name,
    queues_variable,
    scale_variable,
    spec_of,
    split_instance,
)

DEFAULT_ENV_FILE = Path(os.environ.get("ENV_FILE", ".env"))
T = TypeVar("T")


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
class Section:
    """A section of docs/configuration.md: the settings of one concern, in one table."""

    title: str
    intro: str = ""

    def setting(self, default: T, doc: str) -> T:
        """A Settings field of this section, with its description (one or two sentences)."""
        return field(default=default, metadata={"doc": doc, "section": self})

    def derived(self, factory: Callable[[], T], doc: str) -> T:
        """A per-service or per-stage mapping; `doc` is said of each entry ({service} or
        {stage} names it)."""
        return field(default_factory=factory, hash=False, metadata={"doc": doc, "section": self})


BROKER = Section("Broker and database")
NETWORK = Section(
    "Bind address and ports",
    "Each service serves `/healthz`, `/readyz` and `/metrics` on its port, beside its own "
    "routes: ingress's `/webhook`, the relay's admin API (`/admin/...`). The services and "
    "their default ports are declared once, in `shared/services.py`.",
)
WHATSAPP = Section("WhatsApp")
LLM = Section("The LLM")
MEDIA = Section(
    "Media and voice",
    "The media service keeps customers' files, transcribes voice notes and speaks voice "
    "replies ([media.md](media.md)).",
)
QUEUES = Section(
    "Queues, concurrency and retries",
    "Each stage is a consistent-hash exchange over quorum queues, keyed by the conversation "
    "id; the stages are the services of `shared/services.py` that consume one "
    "([architecture.md](architecture.md)).",
)
RELAY = Section(
    "Webhook relay",
    "The relay sends domain events to the CRM endpoints registered through its admin API "
    "([webhooks.md](webhooks.md)).",
)
API = Section(
    "Public API and businesses",
    "The api service serves the REST API (`/v1`) and keeps the directory of businesses, "
    "numbers and API keys ([api.md](api.md)).",
)
HANDOFF = Section(
    "Human handoff",
    "Who answers a conversation: the bot, or the business's people ([console.md](console.md)).",
)
RUNNING = Section("Running and observability")
SECTIONS: tuple[Section, ...] = (
    BROKER,
    NETWORK,
    WHATSAPP,
    LLM,
    MEDIA,
    QUEUES,
    API,
    HANDOFF,
    RELAY,
    RUNNING,
)


@dataclass(frozen=True)
class Variable:
    """A variable that is not a Settings field (read before the settings, or by a library),
    listed in its section of docs/configuration.md all the same."""

    name: str
    default: str  # as the reference shows it (Markdown)
    type: str
    section: Section
    doc: str


# Process environment only: ENV_FILE says where the file is, and the OpenTelemetry SDK reads
# os.environ itself (shared/observability/tracing.py).
OTHER_VARIABLES: tuple[Variable, ...] = (
    Variable(
        "ENV_FILE",
        "`.env`",
        "path",
        RUNNING,
        "The settings file, read after the process environment (`ENV_FILE` itself is read "
        "from the environment only), relative to the current directory. `python -m ops` "
        "(`make up` and the other `make` commands) defaults to the checkout's `.env` and "
        "hands the services its absolute path.",
    ),
    Variable(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "empty",
        "str",
        RUNNING,
        "The OTLP/HTTP collector each service exports its traces to (`/v1/traces` under it), "
        "or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; empty, nothing is exported. Read by the "
        "OpenTelemetry SDK from the process environment only, not from the settings file.",
    ),
    Variable(
        "OTEL_*",
        "the SDK's",
        "",
        RUNNING,
        "The SDK's other standard variables (`OTEL_EXPORTER_OTLP_HEADERS`, "
        "`OTEL_BSP_SCHEDULE_DELAY`...), also from the process environment only; "
        "`service.name` is always the service's name.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Every setting, read by `load_settings`. A field's variable is its name upper-cased,
    but `ports` and `queues`: one `<NAME>_PORT` per service, one `<STAGE>_QUEUES` per stage."""

    amqp_url: str = BROKER.setting(
        "amqp://guest:guest@127.0.0.1:5672/",
        "The RabbitMQ broker every service but the webhook relay connects to; its vhost is "
        "honoured. The nodes of a cluster, comma-separated: a service connects to the first "
        "that answers and moves to the next when its node dies (docs/cluster.md).",
    )
    database_url: str = BROKER.setting(
        "postgresql://postgres@127.0.0.1:5432/whatsapp_bot",
        "The PostgreSQL database of the event store, used by every service but ingress. "
        "`make up` creates it when it does not exist and runs the migrations.",
    )
    bind_address: str = NETWORK.setting(
        "127.0.0.1",
        "The address every service listens on: loopback, so nothing is reachable from "
        "outside unless you say so (`0.0.0.0` or `::` for every interface; docker compose "
        "sets `0.0.0.0` inside its containers). The CLI reaches the services there, or at "
        "loopback when it is every interface.",
    )
    ports: Mapping[str, int] = NETWORK.derived(
        lambda: {s.name: s.port for s in DECLARED},
        "The port `{service}` listens on (its first instance's).",
    )
    scale: Mapping[str, int] = NETWORK.derived(
        lambda: {s.name: 1 for s in DECLARED},
        "How many instances of `{service}` the stack (`make up`) runs. Consumers spread "
        "over the stage's queues (one active consumer per queue keeps each customer's "
        "order), the relay and the api's subscriptions keep one active instance each (the "
        "others are hot standbys), and HTTP services need a load balancer in front to "
        "spread requests.",
    )
    standby_delay_seconds: float = NETWORK.setting(
        5.0,
        "With several instances of a consumer, each subscribes to its own share of the "
        "stage's queues at once and to the others this much later, as their standby (the "
        "first subscriber of a queue is its active consumer). A restarted instance is a "
        "standby until another dies: shares are not rebalanced.",
    )
    instance_port_step: int = NETWORK.setting(
        100,
        "Instance k of a service (k >= 2, `SCALE_<SERVICE>`) listens on the service's port "
        "plus (k - 1) times this.",
    )
    whatsapp_app_secret: str = WHATSAPP.setting(
        "",
        "The Meta app's App Secret: ingress checks every webhook's `X-Hub-Signature-256` "
        "against it and refuses to start without one. `make up` generates one into the "
        "settings file when neither the file nor the environment has one.",
    )
    whatsapp_verify_token: str = WHATSAPP.setting(
        "",
        "The token of Meta's webhook handshake (`GET /webhook`), any string you also enter "
        "in Meta's webhook setup; while it is empty every handshake is refused. `make up` "
        "generates one like the App Secret.",
    )
    whatsapp_access_token: str = WHATSAPP.setting(
        "",
        "The Graph API's bearer token (a system-user token with "
        "`whatsapp_business_messaging`). While it is empty, outbound is a dry run (replies "
        "are recorded as sent with a `wamid.DRYRUN...` id) and media can neither download "
        "files nor upload voice replies.",
    )
    whatsapp_phone_number_id: str = WHATSAPP.setting(
        "",
        "The default business's number (Meta's phone number id). Set, the default business "
        "owns that number only; empty, it answers every number no business registered.",
    )
    whatsapp_waba_id: str = WHATSAPP.setting(
        "", "The default number's WhatsApp Business Account id, registered with it."
    )
    read_receipt_grace_seconds: float = WHATSAPP.setting(
        0.3,
        "How long conversation waits for the reply before it marks the customer's message "
        'read (blue ticks and "typing...") on its own. A reply ready sooner carries the '
        "read mark with it, to outbound in one command instead of two; 0 always marks "
        "read first.",
    )
    whatsapp_api_url: str = WHATSAPP.setting(
        "https://graph.facebook.com/v23.0",
        "The Graph API's base URL, for outbound's sends and the media service's downloads "
        "and uploads.",
    )
    whatsapp_timeout: float = WHATSAPP.setting(
        8.0,
        "Seconds allowed for each of outbound's Graph API requests (sends and read "
        "receipts); the media service's Graph calls have `MEDIA_DOWNLOAD_TIMEOUT`.",
    )
    whatsapp_rate_per_second: float = WHATSAPP.setting(
        80.0,
        "The most messages sent per second per business number (a number's own rate "
        "overrides it), one budget shared by every outbound instance.",
    )
    ingress_publish_timeout: float = WHATSAPP.setting(
        1.0,
        "Seconds ingress waits for the broker's confirm of a delivery before answering 503, "
        "so that an overloaded broker turns Meta away at once instead of holding its "
        "connection (Meta retries later; a confirm that still comes makes the retry a "
        "duplicate, which dedup drops).",
    )
    ingress_max_in_flight: int = WHATSAPP.setting(
        256,
        "Deliveries ingress waits on the broker's confirm for at once; one more is answered "
        "503 with `Retry-After: 1` at once rather than queued behind them (below "
        "HTTP_MAX_CONNECTIONS, so that a slow broker is answered for before connections run "
        "out).",
    )
    max_body_bytes: int = WHATSAPP.setting(
        1_048_576,
        "The largest webhook body ingress accepts, in bytes; a larger one is answered 413.",
    )
    openai_api_key: str = LLM.setting(
        "",
        "The key of the OpenAI-compatible server. While it is empty, the built-in offline "
        "responder answers and voice notes are not transcribed.",
    )
    openai_base_url: str = LLM.setting(
        "https://api.openai.com/v1",
        "The OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio...), for "
        "`/chat/completions` and `/audio/transcriptions`.",
    )
    openai_model: str = LLM.setting("gpt-4o-mini", "The chat model that writes the replies.")
    openai_timeout: float = LLM.setting(15.0, "Seconds allowed for each chat-completions request.")
    openai_max_connections: int = LLM.setting(
        1024,
        "The most chat-completions requests in flight at once per conversation process "
        "(aiohttp's own default would be 100).",
    )
    bot_persona: str = LLM.setting(
        "You are a friendly, concise customer-service assistant for a small business "
        "on WhatsApp. Answer in the customer's language, in a few sentences.",
        "The system prompt sent before the conversation's history.",
    )
    history_turns: int = LLM.setting(
        10,
        "How many of the conversation's most recent messages, the customer's and the bot's, "
        "go to the LLM; 0 sends none.",
    )
    handback_idle_seconds: float = HANDOFF.setting(
        0.0,
        "A conversation a person has (taken over, or waiting for one) goes back to the bot "
        "after this many seconds in which neither the customer nor a person wrote (a "
        "`Released` by `idle`); 0 keeps it with the people until they hand it back.",
    )
    media_enabled: bool = MEDIA.setting(
        True,
        "Whether media messages go to the media service (downloaded, kept, voice notes "
        "transcribed); false answers them from their description alone, with no download.",
    )
    media_dir: str = MEDIA.setting(
        "media",
        "The local media store, and in `.incoming/` under it the temporary files of "
        "downloads and voice replies, with an S3 store too. A relative path is from the "
        "media service's working directory (the checkout, under `make up`).",
    )
    media_download_timeout: float = MEDIA.setting(
        30.0,
        "Seconds allowed for a download's connection and for every wait for more bytes (no "
        "limit on the whole download), and for each of the media service's other Graph API "
        "requests (the media URL lookup, the voice upload).",
    )
    media_s3_bucket: str = MEDIA.setting(
        "", "Set, files are stored in this S3-compatible bucket instead of `MEDIA_DIR`."
    )
    media_s3_endpoint_url: str = MEDIA.setting(
        "",
        "The S3 endpoint: empty for AWS, or for example `http://minio:9000`. Objects are "
        "addressed path-style.",
    )
    media_s3_region: str = MEDIA.setting("us-east-1", "The S3 region.")
    media_s3_access_key_id: str = MEDIA.setting(
        "",
        "The S3 access key id; empty leaves boto3's usual chain (`AWS_*` variables, profile, "
        "instance role).",
    )
    media_s3_secret_access_key: str = MEDIA.setting(
        "", "The S3 secret access key; empty leaves boto3's usual chain."
    )
    media_s3_prefix: str = MEDIA.setting(
        "", "Prepended to every object key (include a trailing `/` for a folder)."
    )
    transcription_model: str = MEDIA.setting(
        "whisper-1",
        "The model for `{OPENAI_BASE_URL}/audio/transcriptions`, which voice notes are "
        "transcribed with when `OPENAI_API_KEY` is set.",
    )
    transcription_timeout: float = MEDIA.setting(
        15.0, "Seconds allowed for each transcription request."
    )
    elevenlabs_api_key: str = MEDIA.setting(
        "",
        "Set, a customer's voice note is answered with a voice note spoken by ElevenLabs; "
        "that needs the media service (`MEDIA_ENABLED`) and `WHATSAPP_ACCESS_TOKEN` for the "
        "upload. Empty, or when speech fails, the reply is text.",
    )
    elevenlabs_base_url: str = MEDIA.setting(
        "https://api.elevenlabs.io", "The ElevenLabs API's base URL."
    )
    elevenlabs_voice_id: str = MEDIA.setting(
        "JBFqnCBsd6RMkjVDRZzb",
        'The voice: by default a premade one every ElevenLabs account has ("George"); any '
        "voice id of yours works.",
    )
    elevenlabs_model_id: str = MEDIA.setting(
        "eleven_multilingual_v2", "The ElevenLabs text-to-speech model."
    )
    elevenlabs_output_format: str = MEDIA.setting(
        "opus_48000_64",
        "The speech format; it must be an `opus_*` one, because WhatsApp plays only "
        "Ogg/Opus as a voice note and audio that is not is never sent as one.",
    )
    elevenlabs_timeout: float = MEDIA.setting(
        15.0, "Seconds allowed for each text-to-speech request."
    )
    queues: Mapping[str, int] = QUEUES.derived(
        lambda: dict.fromkeys(STAGES, DEFAULT_QUEUES),
        "The quorum queues behind the `{stage}` stage, each with a single active consumer; "
        "one customer's messages always go to the same one.",
    )
    prefetch: int = QUEUES.setting(
        64,
        "Unacknowledged deliveries per queue for dedup, outbound and media: the messages a "
        "queue's consumer handles at once, across customers (one customer's are always "
        "handled one at a time).",
    )
    conversation_prefetch: int = QUEUES.setting(
        256,
        "The same for conversation, whose deliveries wait seconds on the LLM: 4 queues of "
        "256 each let 1,024 conversations wait at once.",
    )
    max_attempts: int = QUEUES.setting(
        5,
        "Attempts of a failing handler before its message is dead-lettered; waiting out an "
        "outage (broker, database, an open breaker, a 429) spends none.",
    )
    retry_delay_ms: int = QUEUES.setting(
        2000,
        "Milliseconds a failed message waits, in its lane (the key's later messages behind "
        "it), before its next attempt.",
    )
    quorum_group_size: int = QUEUES.setting(
        0,
        "How many nodes of a RabbitMQ cluster hold a replica of each quorum queue when it is "
        "declared (`x-quorum-initial-group-size`); 0 leaves it to the broker (every node "
        "of the cluster on RabbitMQ 3.10-3.13). 3 survives one dead node, 5 two. Changing "
        "it for queues that exist already makes the broker refuse their declaration: set it "
        "before the first start (docs/cluster.md).",
    )
    delivery_limit: int = QUEUES.setting(
        20,
        "The quorum queues' broker-side redelivery limit (`x-delivery-limit`): a backstop "
        "that dead-letters a message which keeps crashing its consumer.",
    )
    breaker_fail_max: int = QUEUES.setting(
        5,
        "Failures in a row (network errors, timeouts, 5xx) that open the circuit breaker of "
        "an upstream (Graph API, OpenAI, ElevenLabs) or of a CRM endpoint.",
    )
    breaker_reset_seconds: float = QUEUES.setting(
        30.0,
        "Seconds an open breaker stays open before letting one probe through; while it is "
        "open, no call is made to that upstream or endpoint.",
    )
    master_key: str = API.setting(
        "",
        "Base64 of 32 random bytes: the key every stored secret (access tokens, app "
        "secrets) is sealed under. `make up` generates one like the App Secret; keep it "
        "apart from the database's backups.",
    )
    privacy_encryption: bool = API.setting(
        True,
        "Seal every event about a customer with that customer's own data key (wrapped by "
        "MASTER_KEY, table `customer_keys`), so that an erasure destroys the key and every "
        "copy of the data with it ([privacy.md](privacy.md)). Every service must have the same "
        "value (rows written before it was on stay readable in clear; off, erasure still "
        "empties the rows).",
    )
    retention_days: int = API.setting(
        0,
        "Erase every contact silent for longer than this many days (0: keep them); a "
        "business's own retention (`PUT /v1/privacy/retention`) wins "
        "([privacy.md](privacy.md)).",
    )
    media_retention_days: int = API.setting(
        0,
        "Delete the files customers sent this many days after their message (0: keep them); "
        "a business's own (`PUT /v1/privacy/retention`, `media_days`) wins "
        "([privacy.md](privacy.md)).",
    )
    retention_check_seconds: float = API.setting(
        3600.0,
        "How often the api looks for contacts and files past their business's retention.",
    )
    api_key: str = API.setting(
        "",
        "An admin API key of the default business (`wak_...`), written by `make up` when "
        "it creates that business, for you and for `python -m ops`.",
    )
    console_password: str = API.setting(
        "",
        "The password of the console's `admin@localhost` (the default business's admin), "
        "generated by `make up` and printed with the console's address; changed here, the "
        "next `make up` gives the user the new one.",
    )
    api_rate_per_second: float = API.setting(
        100.0, "Requests per second each API key may make, beyond its burst (429 after)."
    )
    api_burst: int = API.setting(
        200, "Requests an API key may make at once before the rate applies."
    )
    default_business_name: str = API.setting(
        "Default business", "The name `make up` gives the business it makes from the environment."
    )
    admin_token: str = RELAY.setting(
        "",
        "The bearer token of the relay's admin API and of `python -m ops endpoints`; while "
        "it is empty the relay still relays but refuses the admin API. `make up` generates "
        "one like the App Secret.",
    )
    webhook_relay_url: str = RELAY.setting(
        "",
        "Where the api reaches the relay's admin API, which serves its `/v1/webhooks` "
        "(decision 0008); empty: the relay's port on this machine. Docker compose sets "
        "`http://webhook_relay:8085`.",
    )
    webhook_timeout: float = RELAY.setting(15.0, "Seconds allowed for each delivery attempt.")
    webhook_retry_schedule: str = RELAY.setting(
        "5s,5m,30m,2h,5h,10h,14h,20h,24h",
        "The waits between a delivery's attempts, comma-separated, in `ms`, `s` (a bare "
        "number), `m`, `h` or `d`. A delivery is dead when the attempt after the last wait "
        "fails, or when it is still throttled once the schedule's total has passed.",
    )
    webhook_retry_jitter: float = RELAY.setting(
        0.2, "Each wait of the schedule is stretched or shrunk at random by up to this fraction."
    )
    webhook_max_in_flight: int = RELAY.setting(
        10,
        "Deliveries in flight at once per endpoint (at least 1); each conversation's go one "
        "at a time, in order.",
    )
    webhook_poll_interval: float = RELAY.setting(
        0.2,
        "Seconds between reads of the event store while events keep coming; while reads find "
        "none, the wait doubles up to 1 s.",
    )
    webhook_allow_http: bool = RELAY.setting(
        False, "Accept `http://` endpoint URLs, not only `https://`: for development only."
    )
    webhook_allowed_networks: str = RELAY.setting(
        "",
        "Comma-separated CIDRs (or addresses) exempt from the SSRF guard, which otherwise "
        "lets only global unicast addresses through: for example `10.20.0.0/16` for a CRM "
        "on your own network.",
    )
    webhook_secret_grace_seconds: float = RELAY.setting(
        86400.0,
        "Seconds the previous secret of an endpoint keeps signing, beside the new one, after "
        "a rotation.",
    )
    webhook_max_pause: float = RELAY.setting(
        3600.0,
        "The longest the relay waits on a `Retry-After` (or pauses a throttled endpoint), "
        "in seconds.",
    )
    webhook_retention_days: float = RELAY.setting(
        14.0,
        "Days after which succeeded and cancelled deliveries are deleted; dead ones are kept.",
    )
    log_level: str = RUNNING.setting(
        "INFO",
        "The level of the services' JSON logs on stdout: `DEBUG`, `INFO`, `WARNING` or "
        "`ERROR` (any case); third-party libraries stay at `WARNING`.",
    )
    run_dir: str = RUNNING.setting(
        ".run",
        "Where `make up` keeps each service's pid file and log (`<service>.pid`, "
        "`<service>.log`), relative to the checkout unless absolute; made private (0700).",
    )
    worker_nice: int = RUNNING.setting(
        5,
        "Niceness `make up` adds to every service but the world-facing ingress (at most "
        "19), so that under load the webhook acks Meta times get the CPU first; 0 makes all "
        "equal. Docker compose does the same with `cpu_shares` 512 against ingress's 1024.",
    )
    extra: dict[str, str] = field(
        default_factory=dict,
        compare=False,
        repr=False,
        metadata={"doc": "Every raw value read: the settings file, overridden by the environment."},
    )
    http_header_timeout: float = NETWORK.setting(
        10.0,
        "Seconds a request's head may take to arrive, from its connection's opening or from "
        "the previous answer on it (so also how long an idle connection is kept), on every "
        "service's port.",
    )
    http_body_timeout: float = NETWORK.setting(
        10.0,
        "Seconds a request's body may take to arrive after its head, on every service's "
        "port; a body still incomplete then has its connection cut.",
    )
    http_max_connections: int = NETWORK.setting(
        512,
        "Connections open at once per service's HTTP server; one more is answered 503 with "
        "`Retry-After: 1` and closed.",
    )

    def port_of(self, service: str) -> int:
        """A service's port, or an instance's (`conversation-2`)."""
        name, index = split_instance(service)  # an unknown name: a KeyError naming them
        return self.ports[name] + (index - 1) * self.instance_port_step

    def instances_of(self, service: str) -> tuple[str, ...]:
        """The instances the stack runs of a service: itself, then `<service>-2`, ..."""
        name = spec_of(service).name
        return tuple(instance_name(name, i) for i in range(1, self.scale.get(name, 1) + 1))

    def queues_of(self, stage: str) -> int:
        return self.queues[stage]

    def url_of(self, service: str) -> str:
        """Where this machine reaches a service: its bind address, or loopback when it
        binds every interface."""
        host = self.bind_address
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port_of(service)}"


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
        if name in _DERIVED:
            continue
        key = name.upper()
        if key in merged:
            kwargs[name] = _coerce(merged[key], getattr(base, name))
    ports = {s.name: int(merged.get(s.port_variable, s.port)) for s in DECLARED}
    queues = {st: int(merged.get(queues_variable(st), DEFAULT_QUEUES)) for st in STAGES}
    scale = {s.name: max(1, int(merged.get(scale_variable(s.name), 1))) for s in DECLARED}
    return Settings(**kwargs, ports=ports, queues=queues, scale=scale, extra=merged)  # type: ignore[arg-type]


# Not read from one variable each: derived from the service list, or the raw values.
_DERIVED = frozenset({"ports", "queues", "scale", "extra"})
