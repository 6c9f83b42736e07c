"""The admin HTTP API (described by openapi.json beside this file).

Every /admin route but the description itself needs `Authorization: Bearer <ADMIN_TOKEN>`.
Without an ADMIN_TOKEN the relay still relays, but refuses to serve the admin API at all.
Secrets appear in exactly two answers (creating an endpoint, rotating its secret) plus the
explicit GET .../secret, never in listings and never in logs.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from services.webhook_relay import catalogue, service
from services.webhook_relay.domain import InvalidEndpoint
from services.webhook_relay.service import Deps, NotFound
from shared.eventstore import StoreUnavailable, WrongExpectedVersion

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
STATES = ("pending", "succeeded", "dead", "cancelled")
MAX_LIMIT = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DepsSource = Callable[[], Deps | None]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidEndpoint(f"{name} must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEndpoint(f"{name} is not an RFC 3339 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidEndpoint("the body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidEndpoint("the body must be a JSON object")
    return data


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.query.get("limit", "100"))))
    except ValueError:
        raise InvalidEndpoint("limit must be a number") from None


def setup_admin(app: web.Application, deps_source: DepsSource, token: str) -> None:
    """Mount /admin. `deps_source` returns None while this relay is a standby."""

    def guarded(fn: Callable[[web.Request, Deps], Awaitable[web.Response]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if not token:
                return _error(503, "the admin API is disabled: ADMIN_TOKEN is not set")
            if not _authorized(request, token):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            deps = deps_source()
            if deps is None:
                return _error(503, "standby relay: the active relay serves the admin API")
            try:
                return await fn(request, deps)
            except InvalidEndpoint as exc:
                return _error(422, str(exc))
            except NotFound as exc:
                return _error(404, str(exc))
            except WrongExpectedVersion:
                return _error(409, "the endpoint was changed meanwhile; read it and try again")
            except (OSError, asyncpg.PostgresConnectionError, StoreUnavailable) as exc:
                return _error(503, f"database unavailable: {type(exc).__name__}")

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
        body = await _body(request)
        endpoint, secret = await service.create_endpoint(
            deps,
            body.get("url"),
            body.get("description", ""),
            body.get("event_types"),
            body.get("secret"),
        )
        return _json({**view(deps, endpoint), "secret": secret}, 201)

    async def list_endpoints(_: web.Request, deps: Deps) -> web.Response:
        endpoints = await deps.relay.list_endpoints()
        return _json({"endpoints": [view(deps, e) for e in endpoints]})

    async def get_endpoint(request: web.Request, deps: Deps) -> web.Response:
        endpoint = await service._get(deps, request.match_info["id"])
        counts = await deps.relay.counts(endpoint.endpoint_id)
        return _json({**view(deps, endpoint), "deliveries": counts})

    async def update(request: web.Request, deps: Deps) -> web.Response:
        body = await _body(request)
        unknown = set(body) - {"url", "description", "event_types"}
        if unknown:
            raise InvalidEndpoint(f"cannot change {sorted(unknown)}")
        endpoint = await service.update_endpoint(
            deps,
            request.match_info["id"],
            url=body.get("url"),
            description=body.get("description"),
            event_types=body.get("event_types"),
        )
        return _json(view(deps, endpoint))

    async def delete(request: web.Request, deps: Deps) -> web.Response:
        await service.delete_endpoint(deps, request.match_info["id"])
        return web.Response(status=204)

    async def rotate(request: web.Request, deps: Deps) -> web.Response:
        body = await _body(request)
        endpoint, secret = await service.rotate_secret(
            deps, request.match_info["id"], body.get("secret")
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
        endpoint = await service._get(deps, request.match_info["id"])
        now = deps.now()
        return _json(
            {
                "secret": endpoint.secrets[0].secret if endpoint.secrets else None,
                "signing_secrets": len(endpoint.signing_secrets(now)),
            }
        )

    async def disable(request: web.Request, deps: Deps) -> web.Response:
        body = await _body(request)
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidEndpoint("reason must be a string")
        endpoint = await service.set_enabled(deps, request.match_info["id"], False, reason)
        return _json(view(deps, endpoint))

    async def enable(request: web.Request, deps: Deps) -> web.Response:
        endpoint = await service.set_enabled(deps, request.match_info["id"], True)
        return _json(view(deps, endpoint))

    async def list_deliveries(request: web.Request, deps: Deps) -> web.Response:
        endpoint_id = request.match_info.get("id") or request.query.get("endpoint_id")
        if endpoint_id and "id" in request.match_info:
            await service._get(deps, endpoint_id)
        state = request.query.get("state")
        if state is not None and state not in STATES:
            raise InvalidEndpoint(f"state must be one of {', '.join(STATES)}")
        before = request.query.get("before")
        rows = await deps.relay.list_deliveries(
            endpoint_id or None,
            state,
            _limit(request),
            _parse_time(before, "before") if before else None,
        )
        return _json({"deliveries": [d.public() for d in rows]})

    async def dead_letters(request: web.Request, deps: Deps) -> web.Response:
        rows = await deps.relay.list_deliveries(
            request.query.get("endpoint_id") or None, "dead", _limit(request)
        )
        return _json({"deliveries": [d.public() for d in rows]})

    async def get_delivery(request: web.Request, deps: Deps) -> web.Response:
        delivery = await deps.relay.delivery(request.match_info["delivery_id"])
        if delivery is None:
            raise NotFound(f"no delivery {request.match_info['delivery_id']}")
        return _json(delivery.public(with_body=True))

    async def replay_one(request: web.Request, deps: Deps) -> web.Response:
        delivery = await service.replay_delivery(deps, request.match_info["delivery_id"])
        return _json(delivery.public(), 202)

    async def replay_dead(request: web.Request, deps: Deps) -> web.Response:
        count = await service.replay_dead(deps, request.match_info["id"])
        return _json({"replayed": count}, 202)

    async def replay_since(request: web.Request, deps: Deps) -> web.Response:
        body = await _body(request)
        since = _parse_time(body.get("since"), "since")
        until = _parse_time(body["until"], "until") if body.get("until") else None
        count = await service.replay_since(deps, request.match_info["id"], since, until)
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
