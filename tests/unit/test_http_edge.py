"""The shared HTTP edge (shared/web) on a real socket: what a client sends never makes a
500, every refusal names its field, slow clients are cut off, and every answer carries the
security headers. The same server every service runs (shared.web.serve), in process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web

from shared.observability.logging import ClientCaused, JsonFormatter
from shared.web import HttpError, Limits, json_too_deep, read_body, read_json, serve
from shared.web.edge import SECURITY_HEADERS
from tests.support.rawhttp import closed_after, exchange, parse, request

LIMITS = Limits(header_timeout=0.5, body_timeout=0.5, max_connections=8)


def nested(depth: int, inner: str = "1") -> str:
    """`depth` levels of arrays and objects, with brackets and escapes inside strings."""
    text = inner
    for level in range(depth):
        if level % 2:
            text = '{"k\\"[{": ' + text + ', "s": "]}\\\\"}'
        else:
            text = '["[[{\\"", ' + text + "]"
    return text


@pytest.mark.parametrize("depth", [1, 31, 32, 33, 64, 65, 500])
def test_the_depth_check_agrees_with_the_parser(depth: int) -> None:
    raw = nested(depth).encode()
    value = msgspec.json.decode(raw)  # valid JSON at every depth used here

    def measured(node: object) -> int:
        deepest, todo = 0, [(node, 0)]
        while todo:
            item, depth = todo.pop()
            if isinstance(item, dict | list):
                deepest = max(deepest, depth + 1)
                values = item.values() if isinstance(item, dict) else item
                todo += [(v, depth + 1) for v in values]
        return deepest

    assert measured(value) == depth
    for limit in (32, 64):
        assert json_too_deep(raw, limit) is (depth > limit), (depth, limit)


def test_the_depth_check_is_linear_on_hostile_bodies() -> None:
    mib = 1 << 20
    hostile = {
        # Each made the relay's old scan (a backtracking regex) quadratic or worse.
        "escaped quotes": b'"' + b'\\"' * (mib // 2),
        "open string and a lone backslash": b'"' + b'\\"' * (mib // 2 - 1) + b"\\",
        "quotes outside strings": b'x\\"' * (mib // 3),
        # Many brackets, but never deeper than the limit: the whole body is scanned.
        "shallow pairs": b"[" + b"[]," * (mib // 3) + b"[]]",
        "deep": b"[" * mib,
    }
    for name, raw in hostile.items():
        start = time.perf_counter()
        json_too_deep(raw, 64)
        assert time.perf_counter() - start < 0.5, name


# --- an app behind the edge ----------------------------------------------------------------


class Served:
    def __init__(self, port: int, records: list[logging.LogRecord]) -> None:
        self.port = port
        self.records = records

    def logged(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= level]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Formatted as the services do, so a record that cannot be written fails here.
        JsonFormatter("test").format(record)
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    server_log = logging.getLogger("aiohttp.server")
    loggers = [logging.getLogger("http"), server_log, logging.getLogger("test")]
    levels = [lg.level for lg in loggers]
    caused = ClientCaused()
    server_log.addFilter(caused)
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    yield handler
    logging.getLogger().setLevel(root_level)
    server_log.removeFilter(caused)
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest_asyncio.fixture
async def served(captured: Capture) -> AsyncIterator[Served]:
    async def echo_header(request: web.Request) -> web.Response:
        # What handlers do with header values: encode them (hmac, drivers, logs).
        value = request.headers.get("X-Probe", "")
        return web.json_response({"bytes": len(value.encode("utf-8")), "text": value})

    async def bug(_: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    async def body(request: web.Request) -> web.Response:
        data = await read_json(request, max_depth=8, fields=("name", "tags"))
        return web.json_response(data)

    async def raw(request: web.Request) -> web.Response:
        return web.Response(text=f"{len(await read_body(request))} bytes")

    async def ignores_body(_: web.Request) -> web.Response:
        return web.Response(text="not reading it")

    async def refuses(_: web.Request) -> web.Response:
        raise HttpError(409, "conflict", "already there", "name")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/header", echo_header)
    app.router.add_get("/bug", bug)
    app.router.add_post("/body", body)
    app.router.add_post("/raw", raw)
    app.router.add_post("/ignores", ignores_body)
    app.router.add_post("/refuses", refuses)
    runner = await serve(app, "127.0.0.1", 0, LIMITS)
    try:
        yield Served(runner.addresses[0][1], captured.records)
    finally:
        await runner.cleanup()


async def post(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], object]:
    answer = await exchange(
        port, request("POST", path, [(b"Content-Type", b"application/json")], body)
    )
    return answer.status, answer.headers, json.loads(answer.body) if answer.body else None


async def test_a_header_that_is_not_utf8_reaches_the_handler_as_text(served: Served) -> None:
    answer = await exchange(served.port, request("GET", "/header", [(b"X-Probe", b"sha\xff\xfe")]))
    assert answer.status == 200
    assert json.loads(answer.body) == {"bytes": 7, "text": "sha\u00ff\u00fe"}  # Latin-1
    utf8 = await exchange(served.port, request("GET", "/header", [(b"X-Probe", "é".encode())]))
    assert json.loads(utf8.body)["text"] == "é"
    assert not served.logged(logging.WARNING)


async def test_json_bodies_are_refused_with_the_field_and_the_reason(served: Served) -> None:
    cases = [
        (b"[" * 500 + b"]" * 500, 400, "json_too_deep", "body"),
        (b'{"name": ' + b"[" * 9 + b"]" * 9 + b"}", 400, "json_too_deep", "body"),
        (b'{"name": "\xff"}', 400, "malformed_json", "body"),
        (b'{"name": NaN}', 400, "malformed_json", "body"),
        (b'{"name": "x"', 400, "malformed_json", "body"),
        (b"[1, 2]", 422, "validation_failed", "body"),
        (b'{"name": "x", "nmae": "y"}', 422, "validation_failed", "nmae"),
        (b'{"name": "' + b"x" * 2000 + b'"}', 413, "payload_too_large", "body"),
    ]
    for raw, status, code, field in cases:
        got, headers, answer = await post(served.port, "/body", raw)
        assert got == status, (raw[:40], got, answer)
        assert isinstance(answer, dict)
        error = answer["error"]
        assert error["code"] == code and error["fields"][0]["path"] == field, error
        assert error["message"], error
        assert headers["content-type"].startswith("application/json")
    got, _, answer = await post(served.port, "/body", b'{"name": "x", "tags": [[1]]}')
    assert (got, answer) == (200, {"name": "x", "tags": [[1]]})
    assert not served.logged(logging.WARNING)


async def test_a_refusal_a_handler_raises_keeps_its_status_and_field(served: Served) -> None:
    got, _, answer = await post(served.port, "/refuses", b"{}")
    assert got == 409
    assert answer == {
        "error": {
            "code": "conflict",
            "message": "already there",
            "fields": [{"path": "name", "message": "already there"}],
        }
    }


async def test_only_a_bug_is_a_500_and_it_is_logged_once_with_its_traceback(
    served: Served,
) -> None:
    answer = await exchange(served.port, request("GET", "/bug"))
    assert answer.status == 500
    assert json.loads(answer.body)["error"]["code"] == "internal_error"
    assert "a bug of ours" not in answer.body.decode()
    [record] = served.logged(logging.ERROR)
    assert record.exc_info is not None and "a bug of ours" in str(record.exc_info[1])
    assert record.fields == {"method": "GET", "route": "/bug"}  # type: ignore[attr-defined]


async def test_every_answer_carries_the_security_headers(served: Served) -> None:
    answers = [
        await exchange(served.port, request("GET", "/header")),  # 200
        await exchange(served.port, request("GET", "/no-such-route")),  # 404
        await exchange(served.port, request("DELETE", "/header")),  # 405
        await exchange(served.port, request("GET", "/bug")),  # 500
        await exchange(served.port, request("POST", "/raw", [], b"x" * 2000)),  # 413
    ]
    assert [a.status for a in answers] == [200, 404, 405, 500, 413]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name.lower()) == value, (answer.status, answer.headers)
    assert json.loads(answers[1].body)["error"]["code"] == "not_found"
    assert answers[2].headers["allow"] == "GET,HEAD"


async def test_a_client_gone_mid_body_is_one_line_at_info(served: Served) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    for _ in range(50):  # until the server has seen the connection go
        if any(r.getMessage().startswith("client gone") for r in served.records):
            break
        await asyncio.sleep(0.02)
    [gone] = [r for r in served.records if r.getMessage().startswith("client gone")]
    assert gone.levelno == logging.INFO and gone.exc_info is None
    assert not served.logged(logging.WARNING)


async def test_a_malformed_request_is_one_line_at_info(served: Served) -> None:
    answer = await exchange(served.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n")
    assert answer.status == 400
    assert not served.logged(logging.WARNING)
    [line] = [r for r in served.records if r.name == "aiohttp.server"]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert "Invalid header token" in line.getMessage()


async def open_partial(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_slow_heads_and_bodies_are_cut_off_while_others_are_served(served: Served) -> None:
    port = served.port
    head = b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    slow_heads = [await open_partial(port, head) for _ in range(3)]
    slow_bodies = [await open_partial(port, head + b"\r\n") for _ in range(2)]
    ignored = await open_partial(
        port, b"POST /ignores HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    )

    # A keep-alive connection: one request answered, then the next one's head left partial.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /header HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    first = await reader.readuntil(b"}")
    assert parse(first).status == 200
    writer.write(b"GET /header HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    keep_alive = (reader, writer)

    async def trickle(writer: asyncio.StreamWriter) -> None:
        # A byte every 100 ms: each is progress, none moves the deadline.
        for _ in range(100):
            await asyncio.sleep(0.1)
            if writer.is_closing():
                return
            writer.write(b"x")
            try:
                await writer.drain()
            except ConnectionError:
                return

    trickles = [asyncio.create_task(trickle(w)) for _, w in [*slow_heads, *slow_bodies]]
    # Meanwhile a normal request is answered at once.
    start = time.monotonic()
    got, _, _ = await post(port, "/body", b'{"name": "n"}')
    assert got == 200 and time.monotonic() - start < 0.3

    waits = await asyncio.gather(
        *(closed_after(r, 3.0) for r, _ in [*slow_heads, *slow_bodies, ignored, keep_alive])
    )
    for task in trickles:
        task.cancel()
    for _, w in [*slow_heads, *slow_bodies, ignored, keep_alive]:
        w.close()
    assert all(w is not None and w < LIMITS.header_timeout + 1.0 for w in waits), waits
    assert not served.logged(logging.WARNING)


async def test_connections_beyond_the_cap_are_refused_and_the_server_recovers(
    served: Served,
) -> None:
    port = served.port
    held = []
    for _ in range(LIMITS.max_connections):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    await asyncio.sleep(0.05)
    answer = await exchange(port, request("GET", "/header"), wait=2)
    assert answer.status in (0, 503), answer  # refused: 503, or closed before it is read
    if answer.status == 503:
        assert answer.headers["retry-after"] == "1"
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.05)
    assert (await exchange(port, request("GET", "/header"), wait=2)).status == 200
