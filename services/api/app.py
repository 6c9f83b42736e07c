"""The api's HTTP application: the route table served behind one edge.

The edge answers every refusal as `{"error": {...}}` with the contract's status, adds the
defensive headers, turns an unreachable database into a 503 (never a 500 for anything a
client sent) and logs only method, route and status, never a body or a token. Each route
authenticates (platform token or business key), takes a token from the key's bucket and
checks the key's role before its handler runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from aiohttp import web

from services.api import console, openapi
from services.api.auth import authenticate, require_key, require_platform
from services.api.errors import ApiError, error_response
from services.api.routes import Call, Deps, Route
from services.api.table import ROUTES
from shared.crypto.personal import ErasedData
from shared.eventstore import StoreUnavailable
from shared.eventstore.postgres import StatementTimeout

log = logging.getLogger("api.http")
MAX_BODY = 256 * 1024  # the largest body the api takes: a message with its objects
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# The database (or the pool's wait for a connection) is away: nothing the client sent.
UNREACHABLE = (
    StoreUnavailable,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "?"


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPNotFound:
        response = error_response(404, "not_found", "no such route")
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here",
            {"Allow": ", ".join(sorted(exc.allowed_methods))},
        )
    except web.HTTPRequestEntityTooLarge:
        response = error_response(413, "too_large", f"the body is over {MAX_BODY} bytes")
    except web.HTTPException as exc:
        response = error_response(exc.status, "http_error", exc.reason)
    except StatementTimeout:
        response = error_response(503, "unavailable", "the database is slow; try again")
    except ErasedData:
        # A write about a customer erased meanwhile (a race with their erasure).
        response = error_response(409, "erased", "the customer was erased")
    except UNREACHABLE as exc:
        log.warning(
            "database unreachable",
            extra={"fields": {"route": _route_name(request), "error": type(exc).__name__}},
        )
        response = error_response(
            503, "unavailable", "the database is unreachable", {"Retry-After": "1"}
        )
    except Exception:
        # A bug of ours: the traceback is logged (never the body: it may hold a token).
        log.exception(
            "request failed",
            extra={"fields": {"method": request.method, "route": _route_name(request)}},
        )
        response = error_response(500, "internal", "internal error; the api's log has details")
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    log.debug(
        "request",
        extra={
            "fields": {
                "method": request.method,
                "route": _route_name(request),
                "status": response.status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            }
        },
    )
    return response


def guarded(route: Route, deps: Deps) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = await authenticate(request, deps.pool, deps.settings.admin_token)
        deps.buckets.check(principal.bucket)
        business_id = ""
        if route.auth == "platform":
            require_platform(principal)
        else:
            business_id = require_key(principal, route.method, route.roles)
        reply = await route.handler(Call(request, deps, principal, business_id))
        return reply.response()

    return handle


def make_app(deps: Deps) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[edge])
    document = msgspec.json.encode(openapi.document(ROUTES))

    async def describe(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/v1/openapi.json", describe)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, guarded(route, deps))
    console.install(app, deps)
    return app
