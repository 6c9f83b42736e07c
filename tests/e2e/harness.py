"""The running stack as the tests see it: the real service processes (started by the same
`Stack` that `make up` uses), an isolated vhost and database, and HTTP fakes of Meta and
OpenAI. Tests talk to it only from the outside: signed webhooks in, Graph API calls out,
and the event store to check what was recorded."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.ingress.signature import sign
from services.webhook_relay.client import AdminClient
from shared.config import load_settings
from shared.stack import SERVICES, Stack
from tests.support import pywa
from tests.support.fakes import FakeGraphAPI, FakeOpenAI
from tests.support.media_fakes import FakeElevenLabs, FakeGraphMedia, FakeOpenAIAudio

APP_SECRET = "e2e-app-secret"
VERIFY_TOKEN = "e2e-verify-token"
ADMIN_TOKEN = "e2e-admin-token"
# The relay's retries in seconds rather than hours (about 6 s from first attempt to dead
# letter), a timeout a hanging CRM can outlast quickly, and CRMs on loopback over http.
RELAY_ENV = {
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "WEBHOOK_RETRY_SCHEDULE": "200ms,400ms,800ms,1600ms,3200ms",
    "WEBHOOK_TIMEOUT": "3",
    "WEBHOOK_POLL_INTERVAL": "0.1",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_customer() -> str:
    """A fresh customer number: tests share one stack, so each uses its own customers."""
    return "39" + "".join(random.choice("0123456789") for _ in range(10))


@dataclass
class Running:
    stack: Stack
    graph: FakeGraphAPI
    openai: FakeOpenAI
    database_url: str
    amqp_url: str
    env: dict[str, str]
    run_dir: Path
    elevenlabs: FakeElevenLabs | None = None
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    @property
    def media_dir(self) -> Path:
        return Path(self.env["MEDIA_DIR"])

    @property
    def relay_admin(self) -> AdminClient:
        """The webhook relay's admin API, with the stack's ADMIN_TOKEN."""
        port = self.stack.settings.webhook_relay_port
        return AdminClient(f"http://127.0.0.1:{port}", ADMIN_TOKEN)

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.settings.ingress_port}"

    def post(
        self,
        payload: Any,
        *,
        signed: bool = True,
        signature: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, str]:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif signed:
            headers["X-Hub-Signature-256"] = sign(APP_SECRET, body)
        req = urllib.request.Request(
            self.ingress_url + "/webhook", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.ingress_url + path, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return self._loop.run_until_complete(run())

    def events(self, stream: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self.sql(
            "SELECT type, data::text AS data FROM events WHERE stream_name = $1"
            " ORDER BY stream_version",
            stream,
        )
        return [(r["type"], json.loads(r["data"])) for r in rows]

    def events_of_type(self, type_: str, **where: str) -> list[dict[str, Any]]:
        clauses = " ".join(f"AND data->>'{k}' = ${i + 2}" for i, k in enumerate(where))
        rows = self.sql(
            f"SELECT data::text AS data FROM events WHERE type = $1 {clauses}"
            " ORDER BY global_position",
            type_,
            *where.values(),
        )
        return [json.loads(r["data"]) for r in rows]

    def metric(self, service: str, name: str, **labels: str) -> float:
        """The value of one sample on a service's /metrics (0 when absent)."""
        port = self.stack.settings.port_of(service)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def restart(self, service: str) -> None:
        self.stack.start(service)
        self.stack.wait_ready((service,), timeout=60)


def start_stack(amqp_url: str, database_url: str, **overrides: str) -> Running:
    # The media-capable fakes answer everything the plain ones do, the same way.
    graph = FakeGraphMedia(access_token="test-token").start()
    openai = FakeOpenAIAudio(api_key="test-key").start()
    elevenlabs = FakeElevenLabs(api_key="test-eleven-key").start()
    run_dir = Path(tempfile.mkdtemp(prefix="wa-e2e-"))
    env = {
        "ENV_FILE": str(run_dir / "absent.env"),
        "RUN_DIR": str(run_dir),
        "AMQP_URL": amqp_url,
        "DATABASE_URL": database_url,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "WHATSAPP_ACCESS_TOKEN": "test-token",
        "WHATSAPP_API_URL": graph.url,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": openai.url,
        "OPENAI_TIMEOUT": "5",
        "WHATSAPP_TIMEOUT": "5",
        "RETRY_DELAY_MS": "300",
        "BREAKER_RESET_SECONDS": "2",
        "HISTORY_TURNS": "6",
        "MEDIA_DIR": str(run_dir / "media"),
        "MEDIA_DOWNLOAD_TIMEOUT": "5",
        "TRANSCRIPTION_TIMEOUT": "5",
        "ELEVENLABS_TIMEOUT": "5",
        # The key is left out: voice replies are on only in stacks that pass it.
        "ELEVENLABS_BASE_URL": elevenlabs.url,
        **RELAY_ENV,
        "LOG_LEVEL": "INFO",
        **{f"{s.upper()}_PORT": str(free_port()) for s in SERVICES},
        **overrides,
    }
    settings = load_settings(env=env, env_file=run_dir / "absent.env")
    stack = Stack(settings, env=env)
    try:
        stack.up(timeout=60)
    except BaseException:
        stack.down()  # the services that did start must not outlive the failed start
        raise
    return Running(stack, graph, openai, database_url, amqp_url, env, run_dir, elevenlabs)


def uniquify(payload: dict[str, Any], customer: str | None = None) -> dict[str, Any]:
    """Fixture payloads repeat their message ids: give every wamid (and the customer) a fresh
    value so one test's payload is never a duplicate of another's."""
    text = json.dumps(payload)
    suffix = uuid.uuid4().hex[:12]
    data = json.loads(text)

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if (
            isinstance(node, str)
            and key in {"id", "message_id", "original_message_id"}
            and (node.startswith("wamid") or node.startswith("<") or key != "id")
        ):
            return f"{node}.{suffix}"
        if customer and isinstance(node, str) and key in {"from", "wa_id", "recipient_id"}:
            return customer
        return node

    return walk(data)


def load_fixtures() -> dict[str, dict[str, Any]]:
    return pywa.payloads()
