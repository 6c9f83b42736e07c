"""The route table: every route's method, path, who may call it, its request and answers.
The app (app.py) serves it and the OpenAPI document (openapi.py) is generated from it, so
the two cannot disagree. Handlers take a `Call` and return a `Reply`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from services.api import inputs
from services.api.auth import Principal
from services.api.consistency import Consistency
from services.api.directory import Actor
from services.api.limits import Buckets
from services.api.relay import RelayClient
from services.api.writes import Idempotency, Stored, Write, request_hash, write
from shared.broker.bus import Bus
from shared.config import Settings
from shared.crypto.secrets import SecretBox

_encode = msgspec.json.Encoder().encode
ALL_ROLES = ("admin", "agent", "viewer")
WRITERS = ("admin", "agent")
ADMIN = ("admin",)


@dataclass
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    box: SecretBox
    idempotency: Idempotency
    consistency: Consistency
    buckets: Buckets
    bus: Bus | None = None
    relay: RelayClient | None = None  # /v1/webhooks: the relay's admin API (decision 0008)
    media: Any = None  # media.MediaFiles: customers' files, read-only
    # Told once a send is recorded: wakes this process's dispatcher (it polls slowly idle).
    sent: Callable[[], None] = lambda: None


@dataclass
class Call:
    request: web.Request
    deps: Deps
    principal: Principal
    business_id: str = ""  # the caller's (key routes) or the path's (platform routes)

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.actor, self.principal.audit)

    def path(self, name: str, what: str) -> str:
        return inputs.path_id(self.request, name, what)


@dataclass(frozen=True)
class Reply:
    status: int
    answer: Any = None  # a Struct, or None for no body
    raw: bytes | None = None  # an idempotent replay: the first answer's bytes
    stream: web.StreamResponse | None = None  # not JSON: a file, answered as it is
    content_type: str = "application/json"  # of `raw` (an export's zip)

    def response(self) -> web.StreamResponse:
        if self.stream is not None:
            return self.stream
        if self.status == 204:
            return web.Response(status=204)
        body = self.raw if self.raw is not None else _encode(self.answer)
        return web.Response(status=self.status, body=body, content_type=self.content_type)


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: str  # platform or key
    roles: tuple[str, ...] = ALL_ROLES
    request: type | None = None
    status: int = 200
    answer: type | None = None
    errors: tuple[int, ...] = ()
    query: tuple[Query, ...] = ()
    idempotent: bool = False  # a create: accepts Idempotency-Key
    body: dict[str, Any] | None = None  # OpenAPI content of a body that is not one Struct
    binary: bool = False  # answers a file (its own Content-Type), not JSON


LIMIT = Query("limit", "page size, 1 to 200 (default 50)", {"type": "integer", "minimum": 1})
CURSOR = Query("cursor", "the next_cursor of the previous page")
PAGING = (LIMIT, CURSOR)


def paging(call: Call, *names: str) -> tuple[int, str | None]:
    inputs.known_query(call.request, ("limit", "cursor", *names))
    return inputs.limit(call.request), inputs.query_text(call.request, "cursor", 400)


async def created(
    call: Call,
    data: Any,
    work: Callable[[Write], Awaitable[Reply]],
    *,
    wait: tuple[str, ...] = (),
    secret: bool = False,
) -> Reply:
    """A create: its write, the Idempotency-Key's first answer kept (or given again) in the
    same transaction, then read your writes for the read models in `wait`."""
    key = inputs.idempotency_key(call.request)
    digest = request_hash(call.request.method, call.request.path, data)
    principal = call.principal.bucket
    async with write(call.deps.pool) as w:
        stored = None
        if key is not None:
            stored = await call.deps.idempotency.begin(w.conn, principal, key, digest)
        if stored is None:
            reply = await work(w)
            position = w.position
            if key is not None:
                answer = Stored(reply.status, _encode(reply.answer), position)
                await call.deps.idempotency.store(w.conn, principal, key, digest, answer, secret)
        else:
            reply, position = Reply(stored.status, raw=stored.body), stored.position
    await call.deps.consistency.wait(position, wait)
    return reply
