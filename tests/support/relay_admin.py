"""Hostile requests to the relay's admin API, shared by the unit tests (a fake store) and the
integration tests (PostgreSQL, which refuses NUL and invalid UTF-8 on its own).

Requests are written as raw bytes on a socket, so they can carry what well-behaved clients
refuse to send: undecodable header bytes, broken chunked framing, a bogus Content-Encoding.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from services.webhook_relay.admin import OPENAPI_PATH

TOKEN = "t0ken"
AUTH = (b"Authorization", b"Bearer " + TOKEN.encode())
METHODS = ("get", "post", "patch", "delete", "put")

# The routes that read a body, and the fields each takes (a valid body for each, too).
BODY_ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("/admin/endpoints", "post"): {"url": "https://crm.example.com/hook"},
    ("/admin/endpoints/{id}", "patch"): {"description": "renamed"},
    ("/admin/endpoints/{id}/rotate-secret", "post"): {},
    ("/admin/endpoints/{id}/disable", "post"): {"reason": "maintenance"},
    ("/admin/endpoints/{id}/replay-since", "post"): {"since": "2026-01-01T00:00:00Z"},
}
QUERY_ROUTES = {
    ("/admin/endpoints/{id}/deliveries", "get"),
    ("/admin/deliveries", "get"),
    ("/admin/dead-letters", "get"),
}
TEXT_FIELDS = {
    ("/admin/endpoints", "post"): ("url", "description"),
    ("/admin/endpoints/{id}", "patch"): ("url", "description"),
    ("/admin/endpoints/{id}/disable", "post"): ("reason",),
    ("/admin/endpoints/{id}/replay-since", "post"): ("since", "until"),
    ("/admin/endpoints/{id}/rotate-secret", "post"): ("secret",),
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")


@dataclass
class Probe:
    name: str
    route: tuple[str, str]  # (path template, method) as in the OpenAPI document
    method: str
    target: str  # path and query, already percent-encoded as sent
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [AUTH])
    body: bytes | None = None
    chunked_raw: bytes | None = None  # sent as is after the headers (Transfer-Encoding)


async def send(port: int, probe: Probe) -> Answer:
    lines = [f"{probe.method.upper()} {probe.target} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in probe.headers]
    lines.append(b"Connection: close")
    payload = b""
    if probe.chunked_raw is not None:
        lines.append(b"Transfer-Encoding: chunked")
        payload = probe.chunked_raw
    elif probe.body is not None:
        lines.append(b"Content-Length: " + str(len(probe.body)).encode())
        payload = probe.body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        await writer.drain()
        if probe.chunked_raw is not None:
            writer.write_eof()  # a broken chunk stream ends here
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    if not raw:
        return Answer(0, {}, b"")  # closed unanswered: the client itself broke the exchange
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Answer(int(status_line.split()[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + rest[:size], rest[size + 2 :]
    return out


def documented() -> dict[tuple[str, str], set[int]]:
    spec = json.loads(OPENAPI_PATH.read_text())
    return {
        (path, method): {int(code) for code in operation["responses"]}
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def fill(template: str, endpoint_id: str, delivery_id: str) -> str:
    return template.replace("{id}", endpoint_id).replace("{delivery_id}", delivery_id)


def hostile_probes(endpoint_id: str, delivery_id: str) -> list[Probe]:
    """Everything a client can get wrong, on every route; `endpoint_id` and `delivery_id`
    exist, so the probes of a body or a query reach the code that reads them."""
    probes: list[Probe] = []
    for route in documented():
        template, method = route
        if template == "/admin/openapi.json":
            continue
        path = fill(template, endpoint_id, delivery_id)
        probes += [
            Probe("auth not UTF-8", route, method, path, [(b"Authorization", b"Bearer \xff\xfe")]),
            Probe("auth latin-1", route, method, path, [(b"Authorization", b"Bearer t\xe9")]),
            Probe("auth no scheme", route, method, path, [(b"Authorization", TOKEN.encode())]),
            Probe("auth empty", route, method, path, [(b"Authorization", b"")]),
        ]
        for name in ("id", "delivery_id"):
            if "{" + name + "}" not in template:
                continue
            for bad in ("%00", "%FF", "%ED%A0%80", "a" * 300, "x%20y", "%F0%9F%98%80", "..%2F"):
                other = fill(template, endpoint_id, delivery_id)
                value = endpoint_id if name == "id" else delivery_id
                probes.append(
                    Probe(f"{name}={bad[:10]}", route, method, other.replace(value, bad, 1))
                )
        if route in QUERY_ROUTES:
            for query in (
                "limit=0",
                "limit=-1",
                "limit=501",
                "limit=abc",
                "limit=1e3",
                "limit=%D9%A5",  # an Arabic-Indic five: int() would take it
                "limit=1_0",
                "limit=" + "9" * 5000,
                "limit=%00",
                "state=%00",
                "state=bogus",
                "before=%00",
                "before=not-a-time",
                "before=9999-12-31T23:59:59-23:59",  # overflows when made UTC
                "before=0001-01-01T00:00:00%2B23:59",
                "endpoint_id=%00",
                "endpoint_id=%FF",
                "endpoint_id=" + "e" * 300,
            ):
                probes.append(Probe(query[:30], route, method, f"{path}?{query}"))
        if route in BODY_ROUTES:
            probes += _body_probes(route, method, path)
    return probes


def _body_probes(route: tuple[str, str], method: str, path: str) -> list[Probe]:
    valid = BODY_ROUTES[route]
    json_type = (b"Content-Type", b"application/json")
    bodies: dict[str, bytes] = {
        "nested arrays 10000": b"[" * 10000 + b"]" * 10000,
        "nested objects 10000": b'{"a":' * 10000 + b"1" + b"}" * 10000,
        "nested inside a field": json.dumps({**valid, "x": 0})[:-1].encode()
        + b', "y": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        "not JSON": b"{",
        "not UTF-8": b'{"url": "\xff\xfe"}',
        "BOM": b"\xef\xbb\xbf{}",
        "array": b"[]",
        "string": b'"x"',
        "null": b"null",
        "number": b"1",
        "NaN": b'{"x": NaN}',
        "huge integer": b'{"x": ' + b"1" * 5000 + b"}",
        "lone surrogate": b'{"description": "\\ud800"}',
        "unknown field": json.dumps({**valid, "event_type": ["message.received"]}).encode(),
    }
    for name in TEXT_FIELDS.get(route, ()):
        for label, value in (
            ("NUL", "https://crm.example.com/a\u0000b"),
            ("newline", "https://crm.example.com/a\nb"),
            ("ESC", "x\u001b[31m"),
            ("bidi", "x\u202ey"),
            ("line separator", "x\u2028y"),
            ("long", "x" * 5000),
            ("int", 5),
            ("list", ["x"]),
            ("object", {"a": 1}),
            ("true", True),
        ):
            bodies[f"{name} {label}"] = json.dumps({**valid, name: value}).encode()
    if "url" in TEXT_FIELDS.get(route, ()):
        for label, url in (
            ("userinfo", "https://user:pass@crm.example.com/hook"),
            ("ideographic", "https://127\u30020\u30020\u30021/hook"),
            ("full-width", "https://\uff11\uff12\uff17.0.0.1/hook"),
            ("backslash", "https://127.0.0.1\\@93.184.216.34/"),
            ("3000 chars", "https://crm.example.com/" + "a" * 3000),
            ("empty", ""),
            ("loopback", "https://127.0.0.1/hook"),
            ("ftp", "ftp://crm.example.com/hook"),
        ):
            bodies[f"url {label}"] = json.dumps({**valid, "url": url}).encode()
    if route == ("/admin/endpoints", "post"):
        bodies["event_types string"] = json.dumps({**valid, "event_types": "*"}).encode()
        bodies["event_types NUL"] = json.dumps({**valid, "event_types": ["a\u0000"]}).encode()
        bodies["secret not whsec"] = json.dumps({**valid, "secret": "abc"}).encode()
    probes = [Probe(n, route, method, path, [AUTH, json_type], b) for n, b in bodies.items()]
    probes += [
        Probe(
            "charset bogus",
            route,
            method,
            path,
            [AUTH, (b"Content-Type", b"application/json; charset=no-such-codec")],
            json.dumps({**valid, "x": 1}).encode(),
        ),
        Probe(
            "gzip garbage",
            route,
            method,
            path,
            [AUTH, json_type, (b"Content-Encoding", b"gzip")],
            b"not gzip at all",
        ),
        Probe(
            "gzip bomb",
            route,
            method,
            path,
            [AUTH, json_type, (b"Content-Encoding", b"gzip")],
            gzip.compress(b'{"description": "' + b"a" * 2_000_000 + b'"}'),
        ),
        Probe("too large", route, method, path, [AUTH, json_type], b" " * 70_000 + b"{}"),
        Probe(
            "broken chunks",
            route,
            method,
            path,
            [AUTH, json_type],
            chunked_raw=b"5\r\n{}\r\n",
        ),
    ]
    return probes
