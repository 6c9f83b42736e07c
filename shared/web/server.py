"""The listening side of every service's HTTP server: read timeouts and a connection cap.

aiohttp has no timeout for reading a request's head, none for its body, and no limit on
open connections; 120 slow connections once stayed open 75 s (its keep-alive default). Here:

- the head: aiohttp's keep-alive timer starts when a connection opens and again after each
  response, is not moved by bytes that arrive, and closes the connection if no complete
  head has been parsed when it fires. Set to `header_timeout`, it is a head-read timeout as
  well as the idle timeout (tests/e2e/test_http_edge.py holds aiohttp to that);
- the body: the edge middleware cuts a body still incomplete `body_timeout` after its head
  (shared/web/edge.py);
- connections: at most `max_connections` open; one more is answered 503 (Meta retries) and
  closed before aiohttp sees it, so those already open are served as usual.

Rates (requests per second per client) need a proxy in front: see docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from shared.observability import metrics
from shared.web.edge import install

log = logging.getLogger("http")

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 34\r\n"
    b"Retry-After: 1\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Connection: close\r\n\r\n"
    b"too many connections; retry later\n"
)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 512


class _Gate:
    """Open connections of one server, against its cap; and refused ones still closing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refusing = 0


REFUSAL_LINGER = 1.0


def _refuse(gate: _Gate, transport: asyncio.Transport) -> None:
    """Answer 503 and close. Closing at once, with the request unread, would make the
    kernel reset the connection and the client lose the answer: the write side is shut
    first and the socket closed a moment later (at once beyond `limit` such moments, so
    that refusing never holds more sockets than serving does)."""
    metrics.http_refused.labels("connection_limit").inc()
    transport.write(_REFUSAL)
    if gate.refusing >= gate.limit or not transport.can_write_eof():
        transport.close()
        return
    gate.refusing += 1
    transport.write_eof()

    def done() -> None:
        gate.refusing -= 1
        transport.abort()

    asyncio.get_running_loop().call_later(REFUSAL_LINGER, done)


class _Guarded(asyncio.Protocol):
    """Counts a connection against the cap, then hands it to aiohttp's protocol. Only the
    asyncio callbacks are passed on: aiohttp's handler holds the transport itself."""

    def __init__(self, gate: _Gate, server: web.Server) -> None:
        self._gate = gate
        self._server = server
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._gate.open >= self._gate.limit:
            # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
            _refuse(self._gate, cast(asyncio.Transport, transport))
            return
        self._gate.open += 1
        self._inner = self._server()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            self._gate.open -= 1
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class _Site(web.BaseSite):
    """A TCP site whose connections pass through the gate."""

    __slots__ = ("_gate", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limit: int) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._gate = _Gate(limit)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(self._gate, server), self._host, self._port, reuse_address=True
        )


async def serve(app: web.Application, host: str, port: int, limits: Limits) -> web.AppRunner:
    """Serve `app` behind the edge (shared/web/edge.py) with `limits`; stop it with the
    runner's cleanup()."""
    install(app, body_timeout=limits.body_timeout)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.header_timeout)
    await runner.setup()
    await _Site(runner, host, port, limits.max_connections).start()
    return runner
