"""The admin HTTP API (described by openapi.json beside this file).

Every /admin route but the description itself needs `Authorization: Bearer <ADMIN_TOKEN>`.
Without an ADMIN_TOKEN the relay still relays, but refuses to serve the admin API at all.
Secrets appear in exactly two answers (creating an endpoint, rotating its secret) plus the
explicit GET .../secret, never in listings and never in logs.

A request may be scoped to one business with `X-Business-Id` (the public api's /v1/webhooks
sends every request so, decision 0008): it then creates endpoints for that business and sees,
changes and replays only that business's endpoints and their deliveries; anything else is
404, as for an id that does not exist. Without it the token sees every business's, and
creates endpoints for the default business. `X-Actor` and `X-Actor-Role` (the api's key
and its role) are recorded as the actor of the events a change writes (the audit trail).

Everything a client sends passes through one layer before any handler logic: the
Authorization header (compared as bytes), the body (size-limited, UTF-8, JSON nested at most
MAX_JSON_DEPTH deep, an object with known fields), path ids and query parameters (checked
against their formats). A refusal is a 4xx naming the field and the reason. The catch-all 500
is for the relay's own bugs; tests send hostile input to every route to show that nothing a
client sends reaches it.

The generic parts (body, JSON, query, times, the bearer comparison) are the shared HTTP
edge's (shared/web), used by every service; this module adds the relay's ids and its error
shape, `{"error": <reason>, "field": <name>}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from services.webhook_relay import catalogue, domain, service
from services.webhook_relay.domain import InvalidEndpoint
from services.webhook_relay.service import Deps, NotFound
from shared.eventstore import StoreUnavailable, WrongExpectedVersion
from shared.web import (
    RENDER,
    ClientGone,
    HttpError,
    bearer_token_matches,
    known_query,
    query_int,
    read_json,
)
from shared.web import parse_time as _shared_parse_time

log = logging.getLogger("webhook_relay.admin")
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
STATES = ("pending", "succeeded", "dead", "cancelled")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_JSON_DEPTH = 32  # the deepest body the API takes is 2; json and msgspec recurse per level
# Ids the relay makes (ep_<hex>, msg_<hex>) and then some; anything else cannot exist, and is
# answered 404 before it reaches the database (which refuses NUL, for one).
_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")

SCOPE_HEADER = "X-Business-Id"
ACTOR_HEADER, ACTOR_ROLE_HEADER = "X-Actor", "X-Actor-Role"
BUSINESS = web.RequestKey("business", str | None)  # the request's scope (_scope)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DepsSource = Callable[[], Deps | None]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    return _json({"error": message, **({"field": field} if field else {})}, status)


def _unauthorized(reason: str) -> web.Response:
    return web.json_response(
        {"error": reason, "field": "Authorization"},
        status=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _check_token(request: web.Request, token: str) -> str | None:
    """None when the bearer token is right, else why not."""
    return None if bearer_token_matches(request, token) else "missing or wrong bearer token"


def _render(error: HttpError) -> web.Response:
    """The shared edge's refusals in the relay's shape. Its documented contract answers
    every refused input 422 (the shared rule's 400 for a body that is not JSON among them)."""
    status = error.status if error.status in (401, 404, 405, 413) or error.status >= 500 else 422
    return _error(status, error.message, error.field)


@contextlib.contextmanager
def _about(name: str) -> Iterator[None]:
    """Attributes a refusal that names no field (the service's URL checks) to `name`."""
    try:
        yield
    except InvalidEndpoint as exc:
        if exc.field is None:
            exc.field = name
        raise


def _parse_time(value: object, name: str) -> datetime:
    try:
        return _shared_parse_time(value, name)
    except HttpError as exc:
        raise InvalidEndpoint(exc.message, name) from None


async def _body(request: web.Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object holding only `fields`; absent body: {}."""
    return await read_json(request, max_depth=MAX_JSON_DEPTH, fields=fields)


def _path_id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise NotFound(f"no {what} with that id ({name} is letters, digits, _ . - only)")
    return value


def _query_id(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if not value:
        return None
    if not _ID.fullmatch(value):
        raise InvalidEndpoint(f"{name} is not an id (letters, digits, _ . - only)", name)
    return value


def _scope(request: web.Request) -> str | None:
    """The business the request is scoped to (`X-Business-Id`), or None: every business."""
    value = request.headers.get(SCOPE_HEADER)
    if value is None:
        return None
    if not _ID.fullmatch(value):
        raise InvalidEndpoint(
            f"{SCOPE_HEADER} is not a business id (letters, digits, _ . - only)", SCOPE_HEADER
        )
    return value


def _actor(request: web.Request) -> dict[str, str]:
    """Who the caller acts for (`X-Actor`, `X-Actor-Role`: the api's key and its role), for
    the events' metadata; {} when not said."""
    out: dict[str, str] = {}
    for header, key in ((ACTOR_HEADER, "actor"), (ACTOR_ROLE_HEADER, "actor_role")):
        value = request.headers.get(header)
        if value is None:
            continue
        if not _ID.fullmatch(value):
            raise InvalidEndpoint(f"{header} is not an id (letters, digits, _ . - only)", header)
        out[key] = value
    return out


def _limit(request: web.Request) -> int:
    return query_int(request, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "?"


def setup_admin(app: web.Application, deps_source: DepsSource, token: str) -> None:
    """Mount /admin. `deps_source` returns None while this relay is a standby."""
    app[RENDER] = _render  # what the shared edge refuses is answered in the relay's shape

    def guarded(fn: Callable[[web.Request, Deps], Awaitable[web.Response]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if not token:
                return _error(503, "the admin API is disabled: ADMIN_TOKEN is not set")
            refused = _check_token(request, token)
            if refused is not None:
                return _unauthorized(refused)
            deps = deps_source()
            if deps is None:
                return _error(503, "standby relay: the active relay serves the admin API")
            try:
                request[BUSINESS] = _scope(request)
                service.ACTOR.set(_actor(request))  # this request's task only
                return await fn(request, deps)
            except InvalidEndpoint as exc:
                return _error(422, str(exc), exc.field)
            except HttpError as exc:
                return _render(exc)
            except NotFound as exc:
                return _error(404, str(exc))
            except WrongExpectedVersion:
                return _error(409, "the endpoint was changed meanwhile; read it and try again")
            except (OSError, asyncpg.PostgresConnectionError, StoreUnavailable) as exc:
                return _error(503, f"database unavailable: {type(exc).__name__}")
            except (web.HTTPException, ClientGone):
                raise  # the shared edge answers these
            except Exception:
                # A bug of ours: logged with its traceback (never the body: it may hold a
                # secret), answered without details.
                log.exception(
                    "admin request failed",
                    extra={"fields": {"method": request.method, "route": _route(request)}},
                )
                return _error(500, "internal error; the relay's log has the details")

        return handler

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")

    async def event_types(_: web.Request, __: Deps) -> web.Response:
        return _json(
            {
                "schema_version": catalogue.SCHEMA_VERSION,
                "event_types": [
                    {"type": m.public_type, "description": m.description}
                    for m in catalogue.MAPPINGS
                ],
            }
        )

    def view(deps: Deps, endpoint: Any) -> dict[str, Any]:
        out: dict[str, Any] = endpoint.public()
        if deps.dispatcher is not None:
            out["status"] = deps.dispatcher.status(endpoint.endpoint_id)
        return out

    async def create(request: web.Request, deps: Deps) -> web.Response:
        body = await _body(request, ("url", "description", "event_types", "secret"))
        url = domain.check_url_form(body.get("url"))
        domain.check_description(body.get("description", ""))
        domain.check_event_types(body.get("event_types"))
        domain.check_secret(body.get("secret"))
        with _about("url"):  # what the service refuses beyond these: the policy and DNS
            endpoint, secret = await service.create_endpoint(
                deps,
                url,
                body.get("description", ""),
                body.get("event_types"),
                body.get("secret"),
                business=request[BUSINESS],
            )
        return _json({**view(deps, endpoint), "secret": secret}, 201)

    async def list_endpoints(request: web.Request, deps: Deps) -> web.Response:
        endpoints = await deps.relay.list_endpoints(business_id=request[BUSINESS])
        return _json({"endpoints": [view(deps, e) for e in endpoints]})

    def endpoint_id(request: web.Request) -> str:
        return _path_id(request, "id", "endpoint")

    def delivery_id(request: web.Request) -> str:
        return _path_id(request, "delivery_id", "delivery")

    async def get_endpoint(request: web.Request, deps: Deps) -> web.Response:
        endpoint = await service._get(deps, endpoint_id(request), request[BUSINESS])
        counts = await deps.relay.counts(endpoint.endpoint_id)
        return _json({**view(deps, endpoint), "deliveries": counts})

    async def update(request: web.Request, deps: Deps) -> web.Response:
        the_id = endpoint_id(request)
        body = await _body(request, ("url", "description", "event_types"))
        if body.get("url") is not None:
            domain.check_url_form(body["url"])
        if body.get("description") is not None:
            domain.check_description(body["description"])
        domain.check_event_types(body.get("event_types"))
        with _about("url"):
            endpoint = await service.update_endpoint(
                deps,
                the_id,
                url=body.get("url"),
                description=body.get("description"),
                event_types=body.get("event_types"),
                business=request[BUSINESS],
            )
        return _json(view(deps, endpoint))

    async def delete(request: web.Request, deps: Deps) -> web.Response:
        await service.delete_endpoint(deps, endpoint_id(request), request[BUSINESS])
        return web.Response(status=204)

    async def rotate(request: web.Request, deps: Deps) -> web.Response:
        the_id = endpoint_id(request)
        body = await _body(request, ("secret",))
        domain.check_secret(body.get("secret"))
        with _about("secret"):
            endpoint, secret = await service.rotate_secret(
                deps, the_id, body.get("secret"), request[BUSINESS]
            )
        previous_until = min(
            (s.expires_at for s in endpoint.secrets if s.expires_at is not None), default=None
        )
        return _json(
            {
                **view(deps, endpoint),
                "secret": secret,
                "previous_valid_until": previous_until.isoformat() if previous_until else None,
            }
        )

    async def get_secret(request: web.Request, deps: Deps) -> web.Response:
        endpoint = await service._get(deps, endpoint_id(request), request[BUSINESS])
        now = deps.now()
        return _json(
            {
                "secret": endpoint.secrets[0].secret if endpoint.secrets else None,
                "signing_secrets": len(endpoint.signing_secrets(now)),
            }
        )

    async def disable(request: web.Request, deps: Deps) -> web.Response:
        the_id = endpoint_id(request)
        body = await _body(request, ("reason",))
        reason = domain.check_reason(body.get("reason", ""))
        endpoint = await service.set_enabled(
            deps, the_id, False, reason, business=request[BUSINESS]
        )
        return _json(view(deps, endpoint))

    async def enable(request: web.Request, deps: Deps) -> web.Response:
        endpoint = await service.set_enabled(
            deps, endpoint_id(request), True, business=request[BUSINESS]
        )
        return _json(view(deps, endpoint))

    async def list_deliveries(request: web.Request, deps: Deps) -> web.Response:
        business = request[BUSINESS]
        paging = ("limit", "before", "before_id")
        if "id" in request.match_info:
            of = endpoint_id(request)
            await service._get(deps, of, business)
            known_query(request, ("state", *paging))
        else:
            known_query(request, ("endpoint_id", "state", *paging))
            of = _query_id(request, "endpoint_id")
        state = request.query.get("state")
        if state is not None and state not in STATES:
            raise InvalidEndpoint(f"state must be one of {', '.join(STATES)}", "state")
        return await deliveries(request, deps, of, state)

    async def deliveries(
        request: web.Request, deps: Deps, of: str | None, state: str | None
    ) -> web.Response:
        before = request.query.get("before")
        before_id = _query_id(request, "before_id")
        if before_id is not None and not before:
            raise InvalidEndpoint("before_id needs before", "before_id")
        limit = _limit(request)
        rows = await deps.relay.list_deliveries(
            of,
            state,
            limit,
            _parse_time(before, "before") if before else None,
            business_id=request[BUSINESS],
            before_id=before_id,
        )
        return _json({"deliveries": [d.public() for d in rows]})

    async def dead_letters(request: web.Request, deps: Deps) -> web.Response:
        known_query(request, ("endpoint_id", "limit", "before", "before_id"))
        return await deliveries(request, deps, _query_id(request, "endpoint_id"), "dead")

    async def get_delivery(request: web.Request, deps: Deps) -> web.Response:
        the_id = delivery_id(request)
        delivery = await deps.relay.delivery(the_id, request[BUSINESS])
        if delivery is None:
            raise NotFound(f"no delivery {the_id}")
        return _json(delivery.public(with_body=True))

    async def replay_one(request: web.Request, deps: Deps) -> web.Response:
        delivery = await service.replay_delivery(deps, delivery_id(request), request[BUSINESS])
        return _json(delivery.public(), 202)

    async def replay_dead(request: web.Request, deps: Deps) -> web.Response:
        count = await service.replay_dead(deps, endpoint_id(request), request[BUSINESS])
        return _json({"replayed": count}, 202)

    async def replay_since(request: web.Request, deps: Deps) -> web.Response:
        the_id = endpoint_id(request)
        body = await _body(request, ("since", "until"))
        since = _parse_time(body.get("since"), "since")
        until = _parse_time(body["until"], "until") if body.get("until") is not None else None
        count = await service.replay_since(deps, the_id, since, until, request[BUSINESS])
        return _json({"replayed": count}, 202)

    r = app.router
    r.add_get("/admin/openapi.json", openapi)
    r.add_get("/admin/event-types", guarded(event_types))
    r.add_post("/admin/endpoints", guarded(create))
    r.add_get("/admin/endpoints", guarded(list_endpoints))
    r.add_get("/admin/endpoints/{id}", guarded(get_endpoint))
    r.add_patch("/admin/endpoints/{id}", guarded(update))
    r.add_delete("/admin/endpoints/{id}", guarded(delete))
    r.add_post("/admin/endpoints/{id}/rotate-secret", guarded(rotate))
    r.add_get("/admin/endpoints/{id}/secret", guarded(get_secret))
    r.add_post("/admin/endpoints/{id}/disable", guarded(disable))
    r.add_post("/admin/endpoints/{id}/enable", guarded(enable))
    r.add_get("/admin/endpoints/{id}/deliveries", guarded(list_deliveries))
    r.add_post("/admin/endpoints/{id}/replay-dead", guarded(replay_dead))
    r.add_post("/admin/endpoints/{id}/replay-since", guarded(replay_since))
    r.add_get("/admin/deliveries", guarded(list_deliveries))
    r.add_get("/admin/dead-letters", guarded(dead_letters))
    r.add_get("/admin/deliveries/{delivery_id}", guarded(get_delivery))
    r.add_post("/admin/deliveries/{delivery_id}/replay", guarded(replay_one))
