"""The HTTP edge of the running services, probed as an attacker would: header bytes that
are not UTF-8, JSON nested 10,000 deep, malformed deliveries retried, a handshake asked to
echo markup, slow and surplus connections, clients that hang up. Nothing they send gets a
500, keeps a connection past its timeout, or is stored twice."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.meta.signature import sign
from shared.payloads import text_message
from shared.services import SERVICES
from shared.stack import ROOT
from shared.web.edge import SECURITY_HEADERS
from tests.e2e.harness import APP_SECRET, VERIFY_TOKEN, Running, free_port, new_customer
from tests.support.fakes import wait_for
from tests.support.rawhttp import Answer, closed_after, exchange, request


def signed_post(body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    headers = [
        (b"Content-Type", b"application/json"),
        (b"X-Hub-Signature-256", sign(APP_SECRET, body).encode()),
        *extra,
    ]
    return request("POST", "/webhook", headers, body)


def ingress_port(bot: Running) -> int:
    return bot.stack.settings.port_of("ingress")


def send(port: int, data: bytes) -> Answer:
    return asyncio.run(exchange(port, data))


def quarantined(bot: Running, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    rows = bot.sql(
        "SELECT stream_name, data::text AS data FROM events"
        " WHERE type = 'MalformedDeliveryReceived' AND data->>'body_base64' = $1",
        base64.b64encode(raw).decode(),
    )
    return [(r["stream_name"], json.loads(r["data"])) for r in rows]


def test_a_signature_header_that_is_not_utf8_is_401_and_counted(bot: Running) -> None:
    body = json.dumps(text_message("x", customer=new_customer())).encode()
    before = bot.metric("ingress", "webhooks_received_total", outcome="bad_signature")
    headers = [(b"Content-Type", b"application/json"), (b"X-Hub-Signature-256", b"sha256=\xff\xfe")]
    answer = send(ingress_port(bot), request("POST", "/webhook", headers, body))
    assert answer.status == 401, answer
    assert json.loads(answer.body)["error"]["fields"][0]["path"] == "X-Hub-Signature-256"
    assert bot.metric("ingress", "webhooks_received_total", outcome="bad_signature") == before + 1


def test_any_header_that_is_not_utf8_is_harmless(bot: Running) -> None:
    customer = new_customer()
    body = json.dumps(text_message("odd headers", customer=customer)).encode()
    odd = [
        (b"User-Agent", b"caf\xe9/1.0"),
        (b"X-Forwarded-For", b"\xff\xfe\x80"),
        (b"Accept", b"\xc3"),
    ]
    answer = send(ingress_port(bot), signed_post(body, odd))
    assert answer.status == 200, answer
    wait_for(lambda: bot.graph.texts_to(customer) == ["echo: odd headers"], timeout=20)


@pytest.mark.parametrize("depth", [10_000, 985, 65])
def test_json_nested_deeper_than_meta_nests_is_quarantined_and_answered_200(
    bot: Running, depth: int
) -> None:
    # 10,000 was a 500. 985 parsed in ingress but not under the deeper stack of a
    # consumer: it was published, failed in dedup (RecursionError) on every attempt and
    # ended in the dead letters. 65 was recorded as a change of unknown shape.
    marker = uuid.uuid4().hex.encode()
    raw = b'{"object": "' + marker + b'", "entry": ' + b"[" * depth + b"]" * depth + b"}"
    answer = send(ingress_port(bot), signed_post(raw))
    assert answer.status == 200, answer
    wait_for(lambda: bool(quarantined(bot, raw)), timeout=20, message="quarantined")
    [(stream, event)] = quarantined(bot, raw)
    assert stream == f"quarantine-{hashlib.sha256(raw).hexdigest()}"
    assert base64.b64decode(event["body_base64"]) == raw


def test_a_malformed_delivery_is_answered_200_and_kept_once_however_often_it_comes(
    bot: Running,
) -> None:
    marker = uuid.uuid4().hex.encode()
    raw = b'{"object": "whatsapp_business_account", "entry": [{"id": "' + marker + b'", \xff'
    statuses = [send(ingress_port(bot), signed_post(raw)).status for _ in range(3)]
    assert statuses == [200, 200, 200]  # kept: Meta must not retry it for days
    # A fence: malformed deliveries share one routing key, so one lane handles them in
    # order; once this later one is kept, the three retries have been handled.
    fence = b'["fence", "' + uuid.uuid4().hex.encode() + b'"]'
    assert send(ingress_port(bot), signed_post(fence)).status == 200
    wait_for(lambda: bool(quarantined(bot, fence)), timeout=20, message="the fence kept")
    assert [s for s, _ in quarantined(bot, raw)] == [
        f"quarantine-{hashlib.sha256(raw).hexdigest()}"
    ]


def handshake(bot: Running, challenge: str, token: str = VERIFY_TOKEN) -> Answer:
    query = urllib.parse.urlencode(
        {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
    )
    return send(ingress_port(bot), request("GET", f"/webhook?{query}"))


def test_the_handshake_echoes_digits_only_as_text_that_is_never_sniffed(bot: Running) -> None:
    answer = handshake(bot, "1158201444")
    assert (answer.status, answer.body) == (200, b"1158201444")
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["x-content-type-options"] == "nosniff"
    for hostile in ("<script>alert(1)</script>", "12a", "١٢٣", "", " 123", "1" * 65):
        refused = handshake(bot, hostile)
        assert refused.status == 400, (hostile, refused)
        assert hostile.encode() not in refused.body or not hostile, refused.body
        assert json.loads(refused.body)["error"]["fields"][0]["path"] == "hub.challenge"
    wrong = handshake(bot, "<b>x</b>", token="not-it")
    assert wrong.status == 403 and b"<b>" not in wrong.body


def test_every_service_answers_with_the_security_headers(bot: Running) -> None:
    for service in SERVICES:
        port = bot.stack.settings.port_of(service)
        for path in ("/healthz", "/no-such-path"):
            answer = send(port, request("GET", path))
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers.get(name.lower()) == value, (service, path, answer.headers)
    refused = send(ingress_port(bot), request("POST", "/webhook", [], b"{}"))
    assert refused.status == 401
    assert refused.headers["x-content-type-options"] == "nosniff"


# --- slow and surplus connections, on an ingress of its own with short limits -------------


@dataclass
class Spare:
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 40


@pytest.fixture
def spare_ingress(bot: Running, tmp_path: Path) -> Iterator[Spare]:
    port = free_port()
    env = {
        **bot.stack.env,
        "INGRESS_PORT": str(port),
        "HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    log = tmp_path / "ingress.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ingress"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=30, message="the spare ingress ready")
        yield Spare(port, log, process)
    finally:
        process.terminate()
        process.wait(timeout=15)


async def _slow_clients(port: int, body: bytes) -> dict[str, Any]:
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    conns = {"head": [], "body": [], "keep_alive": []}  # type: ignore[var-annotated]
    for _ in range(20):  # a head never finished
        conns["head"].append(await asyncio.open_connection("127.0.0.1", port))
        conns["head"][-1][1].write(head)
    for _ in range(10):  # a head, then a body of 500 bytes a byte at a time
        conns["body"].append(await asyncio.open_connection("127.0.0.1", port))
        conns["body"][-1][1].write(head + b"Content-Length: 500\r\n\r\n{")
    # A keep-alive connection: one request answered, then the next head left partial.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\nok")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    conns["keep_alive"].append((reader, writer))
    opened = time.monotonic()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for _ in range(100):  # a byte every 100 ms: progress that moves no deadline
            await asyncio.sleep(0.1)
            if writer.is_closing():
                return
            writer.write(b"x")
            try:
                await writer.drain()
            except ConnectionError:
                return

    trickles = [
        asyncio.create_task(trickle(w)) for kind in ("head", "body") for _, w in conns[kind]
    ]
    # Meanwhile the genuine delivery is answered at once.
    start = time.monotonic()
    genuine = await exchange(port, signed_post(body))
    genuine_time = time.monotonic() - start
    # From when the connections were opened: that is when their deadlines started.
    offset = time.monotonic() - opened
    closed = {
        kind: [
            None if t is None else offset + t
            for t in await asyncio.gather(*(closed_after(r, 10.0) for r, _ in conns[kind]))
        ]
        for kind in conns
    }
    for task in trickles:
        task.cancel()
    for kind in conns:
        for _, w in conns[kind]:
            w.close()
    return {"genuine": genuine, "genuine_time": genuine_time, "closed": closed}


def test_slow_heads_and_trickled_bodies_are_closed_within_their_timeouts(
    bot: Running, spare_ingress: Spare
) -> None:
    customer = new_customer()
    body = json.dumps(text_message("beside the slow ones", customer=customer)).encode()
    result = asyncio.run(_slow_clients(spare_ingress.port, body))
    assert result["genuine"].status == 200 and result["genuine_time"] < 1.0, result
    # Each within its timeout, plus the scheduling of a loaded 2-core machine; aiohttp's
    # default (75 s of keep-alive) kept every one of them open.
    bound = {"head": HEADER_TIMEOUT, "body": BODY_TIMEOUT, "keep_alive": HEADER_TIMEOUT}
    for kind, times in result["closed"].items():
        assert all(t is not None and t < bound[kind] + 1.5 for t in times), (kind, times)
    wait_for(lambda: bot.graph.texts_to(customer) == ["echo: beside the slow ones"], timeout=20)
    lines = spare_ingress.lines()
    assert [line for line in lines if line["level"] in ("error", "critical")] == []
    cut = [line for line in lines if line["event"].startswith("request body not received")]
    assert len(cut) == 10 and all(line["level"] == "info" for line in cut)


async def _beyond_the_cap(port: int) -> tuple[list[Answer], Answer, float]:
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    await asyncio.sleep(0.2)  # all accepted and counted
    refused = [await exchange(port, request("GET", "/healthz"), wait=5) for _ in range(3)]
    # The held connections send nothing: the head timeout frees their places by itself.
    start = time.monotonic()
    while True:
        answer = await exchange(port, request("GET", "/healthz"), wait=5)
        if answer.status == 200 or time.monotonic() - start > 10:
            break
        await asyncio.sleep(0.1)
    for _, writer in held:
        writer.close()
    return refused, answer, time.monotonic() - start


def test_connections_beyond_the_cap_are_refused_and_the_server_recovers_by_itself(
    spare_ingress: Spare,
) -> None:
    refused, later, waited = asyncio.run(_beyond_the_cap(spare_ingress.port))
    for answer in refused:
        # 503 with Retry-After, or closed before the answer could be read (a reset).
        assert answer.status in (0, 503), answer
    assert any(a.status == 503 for a in refused)
    assert later.status == 200 and waited < HEADER_TIMEOUT + 2.0, (later, waited)
    metric = [
        line
        for line in urllib.request.urlopen(f"http://127.0.0.1:{spare_ingress.port}/metrics")
        .read()
        .decode()
        .splitlines()
        if line.startswith('http_refused_total{reason="connection_limit"}')
    ]
    assert metric and float(metric[0].split()[-1]) >= 1


async def _hang_up(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b'POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"entry"')
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await closed_after(reader, 2.0)


def test_a_client_that_hangs_up_is_one_line_at_info_never_a_traceback(
    spare_ingress: Spare,
) -> None:
    for _ in range(3):
        asyncio.run(_hang_up(spare_ingress.port))
    # Malformed HTTP too: one line each.
    send(spare_ingress.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n")

    def logged() -> list[dict[str, Any]]:
        return [
            line
            for line in spare_ingress.lines()
            if line["event"].startswith(("client gone", "client error"))
        ]

    wait_for(lambda: len(logged()) == 4, timeout=10, message="four client lines")
    assert all(line["level"] == "info" and "exception" not in line for line in logged())
    assert [line for line in spare_ingress.lines() if line["level"] == "error"] == []
    assert "Traceback" not in spare_ingress.log.read_text()


async def _partial_heads(ports: list[int]) -> list[float | None]:
    conns = []
    for port in ports:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        conns.append((reader, writer))
    try:
        return list(await asyncio.gather(*(closed_after(r, 20.0) for r, _ in conns)))
    finally:
        for _, writer in conns:
            writer.close()


def test_every_service_closes_a_head_left_partial(bot: Running) -> None:
    """The head timeout is the runtime's, so every service has it (default 10 s)."""
    timeout = bot.stack.settings.http_header_timeout
    waits = asyncio.run(_partial_heads([bot.stack.settings.port_of(s) for s in SERVICES]))
    assert all(w is not None and w < timeout + 2 for w in waits), dict(
        zip(SERVICES, waits, strict=True)
    )
