"""`/v1/webhooks`: the business's CRM endpoints, their deliveries, dead letters and replays.
The webhook relay owns them; every handler asks its admin API, scoped to the caller's
business (relay.py, decision 0008), and answers in the api's conventions (lists as
`{"data", "next_cursor"}`, errors as `{"error": {...}}`). A secret is in two answers only:
the endpoint's creation and a rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

from services.api import cursor, inputs
from services.api import schemas as s
from services.api.errors import invalid, unavailable
from services.api.relay import RelayClient, segment
from services.api.routes import Call, Reply, created, paging
from services.api.writes import Write

T = TypeVar("T")
ENDPOINT = "webhook endpoint"
DELIVERY = "webhook delivery"


def _relay(call: Call) -> RelayClient:
    if call.deps.relay is None:
        raise unavailable("webhooks are not served by this api")
    return call.deps.relay


def _decode(raw: bytes, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.DecodeError:
        # The relay answered something this api does not read: its bug or a version skew,
        # never the client's doing.
        raise unavailable("the webhook relay answered unexpectedly") from None


async def _ask(
    call: Call,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    query: dict[str, str] | None = None,
    what: str = ENDPOINT,
) -> bytes:
    principal = call.principal
    actor = (principal.key_id, principal.role)  # the audit trail: who changed what
    _, raw = await _relay(call).call(call.business_id, method, path, body, query, what, actor)
    return raw


def _endpoint_path(call: Call, suffix: str = "") -> str:
    return "/endpoints/" + segment(call.path("id", ENDPOINT)) + suffix


def _fields(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields the client set, as JSON values (to_builtins leaves UNSET ones out)."""
    return dict(msgspec.to_builtins(struct))


# --- endpoints -----------------------------------------------------------------------------


async def create_endpoint(call: Call) -> Reply:
    request, data = await inputs.body(call.request, s.CreateWebhookEndpoint)
    body: dict[str, Any] = {"url": request.url, "description": request.description}
    if request.event_types is not None:
        body["event_types"] = request.event_types

    async def work(_: Write) -> Reply:
        raw = await _ask(call, "POST", "/endpoints", body)
        return Reply(201, _decode(raw, s.WebhookEndpointCreated))

    return await created(call, data, work, secret=True)


class _Endpoints(msgspec.Struct):
    endpoints: list[s.WebhookEndpoint]


async def list_endpoints(call: Call) -> Reply:
    limit, given = paging(call)
    after = cursor.decode(given, datetime, str)
    rows = _decode(await _ask(call, "GET", "/endpoints"), _Endpoints).endpoints
    rows.sort(key=lambda e: (e.created_at, e.id), reverse=True)  # newest first
    if after is not None:
        mark = (after[0], after[1])
        rows = [e for e in rows if (e.created_at, e.id) < mark]
    page = rows[:limit]
    more = len(rows) > limit
    next_cursor = cursor.encode(page[-1].created_at, page[-1].id) if more and page else None
    return Reply(200, s.WebhookEndpointList(data=page, next_cursor=next_cursor))


async def get_endpoint(call: Call) -> Reply:
    return Reply(200, _decode(await _ask(call, "GET", _endpoint_path(call)), s.WebhookEndpoint))


async def update_endpoint(call: Call) -> Reply:
    request, _ = await inputs.body(call.request, s.PatchWebhookEndpoint)
    raw = await _ask(call, "PATCH", _endpoint_path(call), _fields(request))
    return Reply(200, _decode(raw, s.WebhookEndpoint))


async def delete_endpoint(call: Call) -> Reply:
    await _ask(call, "DELETE", _endpoint_path(call))
    return Reply(204)


async def rotate_secret(call: Call) -> Reply:
    raw = await _ask(call, "POST", _endpoint_path(call, "/rotate-secret"), {})
    return Reply(200, _decode(raw, s.WebhookSecretRotated))


async def disable_endpoint(call: Call) -> Reply:
    request, _ = await inputs.body(call.request, s.DisableWebhookEndpoint)
    body = {"reason": request.reason} if request.reason else {}
    raw = await _ask(call, "POST", _endpoint_path(call, "/disable"), body)
    return Reply(200, _decode(raw, s.WebhookEndpoint))


async def enable_endpoint(call: Call) -> Reply:
    raw = await _ask(call, "POST", _endpoint_path(call, "/enable"))
    return Reply(200, _decode(raw, s.WebhookEndpoint))


async def replay_dead(call: Call) -> Reply:
    raw = await _ask(call, "POST", _endpoint_path(call, "/replay-dead"))
    return Reply(202, _decode(raw, s.Replayed))


async def replay_since(call: Call) -> Reply:
    request, _ = await inputs.body(call.request, s.ReplaySince)
    body = {"since": request.since.isoformat()}
    if request.until is not None:
        body["until"] = request.until.isoformat()
    raw = await _ask(call, "POST", _endpoint_path(call, "/replay-since"), body)
    return Reply(202, _decode(raw, s.Replayed))


# --- deliveries ----------------------------------------------------------------------------


class _Deliveries(msgspec.Struct):
    deliveries: list[s.WebhookDelivery]


async def _deliveries(call: Call, path: str, query: dict[str, str], what: str) -> Reply:
    """A page of deliveries, newest first: the relay pages by (created_at, id)."""
    limit = inputs.limit(call.request)
    after = cursor.decode(inputs.query_text(call.request, "cursor", 400), datetime, str)
    query = {**query, "limit": str(limit + 1)}
    if after is not None:
        query |= {"before": after[0].isoformat(), "before_id": after[1]}
    rows = _decode(await _ask(call, "GET", path, query=query, what=what), _Deliveries).deliveries
    page = rows[:limit]
    more = len(rows) > limit
    next_cursor = cursor.encode(page[-1].created_at, page[-1].id) if more and page else None
    return Reply(200, s.WebhookDeliveryList(data=page, next_cursor=next_cursor))


async def list_endpoint_deliveries(call: Call) -> Reply:
    paging(call, "state")
    state = inputs.query_choice(call.request, "state", STATES)
    query = {"state": state} if state else {}
    return await _deliveries(call, _endpoint_path(call, "/deliveries"), query, ENDPOINT)


async def list_dead_letters(call: Call) -> Reply:
    paging(call, "endpoint_id")
    of = inputs.query_text(call.request, "endpoint_id")
    if of is not None and not inputs.ID.fullmatch(of):
        raise invalid("endpoint_id", "not an id")
    query = {}
    if of is not None:
        # Another business's endpoint in a filter is a 404, as in a path, not an empty list.
        await _ask(call, "GET", "/endpoints/" + segment(of))
        query["endpoint_id"] = of
    return await _deliveries(call, "/dead-letters", query, ENDPOINT)


def _delivery_path(call: Call, suffix: str = "") -> str:
    return "/deliveries/" + segment(call.path("delivery_id", DELIVERY)) + suffix


async def get_delivery(call: Call) -> Reply:
    raw = await _ask(call, "GET", _delivery_path(call), what=DELIVERY)
    return Reply(200, _decode(raw, s.WebhookDelivery))


async def replay_delivery(call: Call) -> Reply:
    raw = await _ask(call, "POST", _delivery_path(call, "/replay"), what=DELIVERY)
    return Reply(202, _decode(raw, s.WebhookDelivery))


# --- the catalogue -------------------------------------------------------------------------


class _EventTypes(msgspec.Struct):
    schema_version: int
    event_types: list[s.EventType]


async def event_types(call: Call) -> Reply:
    inputs.known_query(call.request, ())
    found = _decode(await _ask(call, "GET", "/event-types"), _EventTypes)
    return Reply(
        200,
        s.EventTypeList(
            data=found.event_types, next_cursor=None, schema_version=found.schema_version
        ),
    )


STATES = ("pending", "succeeded", "dead", "cancelled")
