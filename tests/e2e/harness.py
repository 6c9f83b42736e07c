"""The running stack as the tests see it: the real service processes (started by the same
`Stack` that `make up` uses), an isolated vhost and database, and HTTP fakes of Meta and
OpenAI. Tests talk to it only from the outside: signed webhooks in, Graph API calls out,
and the event store to check what was recorded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import asyncpg
import msgspec

from services.webhook_relay.client import AdminClient
from shared.broker.cluster import connect_any
from shared.broker.topology import stages
from shared.config import Settings, load_settings
from shared.crypto.datakeys import KeyRing
from shared.crypto.erased import customer_key, keyed
from shared.crypto.personal import mapper_with_keys
from shared.crypto.secrets import MasterKey
from shared.eventstore import RecordedEvent, Unrecognised
from shared.eventstore.postgres import PostgresEventStore, init_connection
from shared.meta.signature import sign
from shared.payloads import messages_payload, text_message
from shared.services import SERVICES
from shared.stack import Stack
from tests.support import pywa
from tests.support.fakes import FakeGraphAPI, FakeOpenAI, wait_for
from tests.support.keys import SESSION_MASTER_KEY
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
PHONE_NUMBER_ID = "100000000000001"  # shared.payloads' default business number
MASTER_KEY = SESSION_MASTER_KEY  # seals the numbers' secrets and the customers' data keys
FENCE_TIMEOUT = 45.0


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
    _ring: KeyRing | None = None
    # The harness's own connections, kept (raw, and with the store's codecs): the server's
    # slots are shared with every stack of the session, and connecting for each query
    # can meet its limit.
    _kept: dict[str, asyncpg.Connection] = field(default_factory=dict)

    async def _on_kept(self, kind: str, use: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """`use` on the kept connection of this kind; once more on a new one if it was lost
        (a test restarts PostgreSQL)."""
        for attempt in (1, 2):
            conn = self._kept.get(kind)
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(self.database_url)
                if kind == "store":
                    await init_connection(conn)  # jsonb as the store's pool has it
                self._kept[kind] = conn
            try:
                return await use(conn)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                self._kept.pop(kind, None)
                conn.terminate()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @property
    def media_dir(self) -> Path:
        return Path(self.env["MEDIA_DIR"])

    @property
    def relay_admin(self) -> AdminClient:
        """The webhook relay's admin API, with the stack's ADMIN_TOKEN."""
        port = self.stack.settings.port_of("webhook_relay")
        return AdminClient(f"http://127.0.0.1:{port}", ADMIN_TOKEN)

    @property
    def ingress_url(self) -> str:
        return self.stack.settings.url_of("ingress")

    @property
    def api_url(self) -> str:
        return self.stack.settings.url_of("api")

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = ADMIN_TOKEN,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> ApiAnswer:
        """One request to the api (`token` None: no Authorization header)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.api_url + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return ApiAnswer(resp.status, _json_or_none(resp.read()), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return ApiAnswer(exc.code, _json_or_none(exc.read()), dict(exc.headers))

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

    def conversation_id(
        self, number: str, customer: str, business: str = "default", epoch: int = 0
    ) -> str:
        """The conversation of `customer` (the id Meta gives them) with `number`, as dedup
        names it: by the customer's key, a keyed pseudonym (shared/crypto/erased.py)."""
        return f"{number}.{self.customer_key(customer, business, epoch)}"

    def customer_key(self, customer: str, business: str = "default", epoch: int = 0) -> str:
        master = self.env.get("MASTER_KEY")
        if not master:
            return keyed(customer, epoch)
        if self._ring is None:

            async def start() -> KeyRing:
                conn = await asyncpg.connect(self.database_url)
                try:
                    return await KeyRing(MasterKey(master)).start(conn)
                finally:
                    await conn.close()

            # In a thread of its own: a browser test's playwright runs a loop in this one.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                self._ring = pool.submit(asyncio.run, start()).result()
        return customer_key(business, customer, epoch, self._ring)

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(query, *args)

        return self._loop.run_until_complete(self._on_kept("raw", run))

    def read_store(
        self, read: Callable[[PostgresEventStore], Awaitable[list[RecordedEvent]]]
    ) -> list[RecordedEvent]:
        """What `read` gets from the event store, opened with the deployment's keys: the
        data is sealed in the table (PRIVACY_ENCRYPTION, on by default), so the tests read
        events as the services do, through the store's mapper. A test that truly needs the
        stored rows says so with `sql`."""

        async def run(conn: asyncpg.Connection) -> list[RecordedEvent]:
            key = self.env.get("MASTER_KEY")
            mapper = await mapper_with_keys(conn, key) if key else None
            return await read(PostgresEventStore(conn=conn, mapper=mapper))

        return self._loop.run_until_complete(self._on_kept("store", run))

    def events(self, stream: str) -> list[tuple[str, dict[str, Any]]]:
        """(type, data) of every event of the stream, opened."""
        return [_type_and_data(r) for r in self.read_store(lambda s: s.read_stream(stream))]

    def events_of_type(self, type_: str, **where: Any) -> list[dict[str, Any]]:
        """The data of every event of this type whose fields have these values, opened."""
        found = []
        for record in self.read_store(lambda s: s.read_after(types=[type_], limit=1_000_000)):
            _, data = _type_and_data(record)
            if all(_as_text(data.get(k)) == _as_text(v) for k, v in where.items()):
                found.append(data)
        return found

    def events_after(self, position: int) -> list[tuple[str, str, dict[str, Any]]]:
        """(stream, type, data) of every event past a global position, opened."""
        return [
            (r.stream, *_type_and_data(r))
            for r in self.read_store(lambda s: s.read_after(position, limit=1_000_000))
        ]

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

    def close(self) -> None:
        """Stop the services, then the fakes they talk to."""
        for conn in self._kept.values():
            conn.terminate()
        self._kept.clear()
        self.stack.down()
        for fake in (self.graph, self.openai, self.elevenlabs):
            if fake is not None:
                fake.stop()

    def restart(self, service: str) -> None:
        self.stack.start(service)
        self.stack.wait_ready((service,), timeout=60)

    # --- proving that nothing more happens ---------------------------------------------------

    def queue_depths(self, *queues: str) -> dict[str, int]:
        """Messages ready in each queue, from a passive declare over AMQP. That count leaves
        out messages delivered and not yet acked: a retry queue has no consumer, so its count
        is exact; a stage queue's misses what a service holds, which is in the lane of its
        key (see `fence`)."""

        return {name: int(r.message_count or 0) for name, r in self._declared(queues).items()}

    def queue_consumers(self, *queues: str) -> dict[str, int]:
        """Consumers subscribed to each queue, the active one and those waiting (AMQP's
        declare counts only the single active consumer)."""
        vhost = unquote(urlsplit(self.amqp_url).path[1:]) or "/"
        listed = subprocess.run(
            [
                "rabbitmqctl",
                "list_consumers",
                "-q",
                "-p",
                vhost,
                "queue_name",
                "--formatter",
                "json",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        counts = Counter(c["queue_name"] for c in json.loads(listed.stdout or "[]"))
        return {name: counts[name] for name in queues}

    def _declared(self, queues: tuple[str, ...]) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            connection = await connect_any(self.amqp_url)
            try:
                channel = await connection.channel()
                results = {}
                for name in queues:
                    queue = await channel.declare_queue(name, passive=True)
                    results[name] = queue.declaration_result
                return results
            finally:
                await connection.close()

        return self._loop.run_until_complete(read())

    def retry_queues(self) -> list[str]:
        return [stage.retry_queue for stage in stages(self.stack.settings).values()]

    def fence(
        self,
        customer: str,
        *,
        phone_number_id: str = PHONE_NUMBER_ID,
        media: bool = False,
        timeout: float = FENCE_TIMEOUT,
    ) -> str:
        """Send one more message as `customer` and wait for its reply at the fake Graph API.
        Returns that reply's text ("echo: fence ...").

        Every hop keeps one customer's messages in order: dedup, conversation, media and
        outbound are consistent-hash exchanges on the conversation key, over queues with a
        single active consumer, and each consumer runs a key's messages one after another,
        through to the ack. So once the fence's reply is sent, every earlier message of the
        customer (and every command, redelivery or re-emitted reply it caused in those lanes)
        has been fully handled: a reply that has not come by then never will, and exact
        counts can be asserted at once instead of after a sleep.

        A text fence runs through dedup, conversation and outbound, and through media when
        the conversation's replies go there (voice replies). `media=True` sends an image
        instead, whose download also runs through the customer's lane in the media service:
        use it when what must not happen could come out of that lane (a ProcessMedia handled
        twice)."""
        return self.fences({customer: phone_number_id}, media=media, timeout=timeout)[customer]

    def fences(
        self,
        customers: Iterable[str] | Mapping[str, str],
        *,
        media: bool = False,
        timeout: float = FENCE_TIMEOUT,
    ) -> dict[str, str]:
        """`fence` for several customers at once (a mapping gives each customer's business
        number); returns each customer's fence reply."""
        numbers = (
            dict(customers)
            if isinstance(customers, Mapping)
            else dict.fromkeys(customers, PHONE_NUMBER_ID)
        )
        # A message waiting in a retry queue is out of its lane: the fence could overtake
        # it. Let every one go back to its stage (behind which the fence then queues) first.
        retry_queues = self.retry_queues()
        wait_for(
            lambda: not any(self.queue_depths(*retry_queues).values()),
            timeout=timeout,
            interval=0.1,
            message="the retry queues to empty before a fence",
        )
        markers = {}
        for customer, phone_number_id in numbers.items():
            markers[customer] = marker = f"fence {uuid.uuid4().hex}"
            if media:
                payload = self._image_message(customer, phone_number_id, caption=marker)
            else:
                payload = text_message(marker, customer=customer, phone_number_id=phone_number_id)
            status, body = self.post(payload)
            assert status == 200, f"fence for {customer} refused: {status} {body}"

        def reply(customer: str) -> str | None:
            found = [t for t in self.graph.texts_to(customer) if markers[customer] in t]
            return found[0] if found else None

        wait_for(
            lambda: all(reply(c) is not None for c in numbers),
            timeout=timeout,
            message="the fences' replies: "
            + ", ".join(f"{c} {markers[c]!r}" for c in numbers if reply(c) is None),
        )
        return {c: cast(str, reply(c)) for c in numbers}

    def _image_message(self, customer: str, phone_number_id: str, caption: str) -> dict[str, Any]:
        graph = cast(FakeGraphMedia, self.graph)
        image = graph.add_media(os.urandom(256), "image/jpeg")
        message = {
            "from": customer,
            "id": f"wamid.{uuid.uuid4().hex}",
            "timestamp": str(int(time.time())),
            "type": "image",
            "image": {"id": image.media_id, "mime_type": "image/jpeg", "caption": caption},
        }
        return messages_payload([message], customer, phone_number_id)


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    json: Any
    headers: dict[str, str]


def _type_and_data(record: RecordedEvent) -> tuple[str, dict[str, Any]]:
    event = record.event
    if isinstance(event, Unrecognised):  # Erased and Undecodable too: their row's type
        return event.type, dict(event.data)
    return type(event).__name__, msgspec.to_builtins(event)


def _as_text(value: Any) -> str | None:
    """A field's value as SQL's `data->>'field'` gives it."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


@contextlib.contextmanager
def own_stack(**overrides: str) -> Iterator[Running]:
    """A stack on a vhost and database of its own (no other stack takes its messages or
    shares its data), with these settings; stopped and removed afterwards."""
    from tests.support.infra import start_infra

    infra = start_infra()
    try:
        running = start_stack(infra.amqp_url, infra.database_url, **overrides)
        try:
            yield running
        finally:
            running.close()
    finally:
        infra.cleanup()


def start_stack(
    amqp_url: str,
    database_url: str,
    *,
    stack_factory: Callable[[Settings, dict[str, str], Path], Stack] | None = None,
    **overrides: str,
) -> Running:
    """The services with the fakes; `stack_factory` runs them some other way than as local
    processes (tests/compose: as containers)."""
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
        # A deployment answers 503 after 1 s without the broker's confirm; the suites share
        # two cores with RabbitMQ's fsyncs, and a test's single post must not be turned away.
        "INGRESS_PUBLISH_TIMEOUT": "5",
        "BREAKER_RESET_SECONDS": "2",
        "HISTORY_TURNS": "6",
        "MEDIA_DIR": str(run_dir / "media"),
        "MEDIA_DOWNLOAD_TIMEOUT": "5",
        "TRANSCRIPTION_TIMEOUT": "5",
        "ELEVENLABS_TIMEOUT": "5",
        # The key is left out: voice replies are on only in stacks that pass it.
        "ELEVENLABS_BASE_URL": elevenlabs.url,
        **RELAY_ENV,
        "MASTER_KEY": MASTER_KEY,
        "LOG_LEVEL": "INFO",
        **{f"{s.upper()}_PORT": str(free_port()) for s in SERVICES},
        **overrides,
    }
    settings = load_settings(env=env, env_file=run_dir / "absent.env")
    stack = stack_factory(settings, env, run_dir) if stack_factory else Stack(settings, env=env)
    try:
        stack.up(timeout=120 if stack_factory else 60)
    except BaseException:
        stack.down()  # the services that did start must not outlive the failed start
        raise
    return Running(stack, graph, openai, database_url, amqp_url, env, run_dir, elevenlabs)


USER_ID_KEYS = {"user_id", "from_user_id", "recipient_user_id"}


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
        if customer and isinstance(node, str) and key in USER_ID_KEYS:
            # The fixtures' business-scoped user ids repeat too: one per customer, or every
            # customer would be linked to one person.
            return f"US.{customer}"
        return node

    return walk(data)


def load_fixtures() -> dict[str, dict[str, Any]]:
    return pywa.payloads()
