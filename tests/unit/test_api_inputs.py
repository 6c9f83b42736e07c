"""The api's input layer, message validation, tokens, limits and its OpenAPI document: no
broker, no database."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from aiohttp import web

from services.api import cursor, inputs, messages, openapi
from services.api.auth import Principal, hash_key, new_key, require_key, require_platform
from services.api.errors import ApiError
from services.api.limits import Buckets
from services.api.table import ROUTES
from shared.web import json_too_deep
from tests.support.rawhttp import exchange, request


def send(**body: Any) -> messages.SendMessage:
    message = inputs.convert({"to": "15550001111", **body}, messages.SendMessage)
    messages.check(message)
    return message


def refused(**body: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as exc:
        send(**body)
    fields = exc.value.details.get("fields") or [{"path": ""}]
    return exc.value.status, fields[0]["path"]


BUTTON = {"type": "reply", "reply": {"id": "a", "title": "Yes"}}


@pytest.mark.parametrize(
    "body",
    [
        {"type": "text", "text": {"body": "hi", "preview_url": True}},
        {"type": "image", "image": {"link": "https://example.com/a.jpg", "caption": "look"}},
        {"type": "audio", "audio": {"id": "123"}},
        {"type": "video", "video": {"id": "123"}},
        {"type": "document", "document": {"id": "1", "filename": "a.pdf"}},
        {"type": "sticker", "sticker": {"id": "1"}},
        {"type": "location", "location": {"latitude": 52.5, "longitude": 13.4, "name": "B"}},
        {
            "type": "contacts",
            "contacts": [{"name": {"formatted_name": "Ann"}, "phones": [{"phone": "1"}]}],
        },
        {"type": "reaction", "reaction": {"message_id": "wamid.1", "emoji": "👍"}},
        {"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}},
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "?"},
                "action": {"buttons": [BUTTON]},
            },
        },
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "?"},
                "action": {"button": "Pick", "sections": [{"rows": [{"id": "r", "title": "R"}]}]},
            },
        },
        {
            "type": "interactive",
            "interactive": {
                "type": "cta_url",
                "body": {"text": "?"},
                "action": {
                    "name": "cta_url",
                    "parameters": {"display_text": "Go", "url": "https://x.io"},
                },
            },
        },
        {"type": "text", "text": {"body": "q"}, "context": {"message_id": "wamid.2"}},
        {"type": "text", "text": {"body": "q"}, "messaging_product": "whatsapp"},
    ],
)
def test_every_type_as_the_cloud_api_shapes_it(body: dict[str, Any]) -> None:
    message = send(**body)
    payload = messages.graph_payload(message)
    assert payload["type"] == body["type"] and body["type"] in payload
    assert messages.summary(message) is not None


def test_what_meta_would_refuse_is_a_422_naming_the_field() -> None:
    four = [{"type": "reply", "reply": {"id": str(i), "title": "t"}} for i in range(4)]
    rows = [{"id": str(i), "title": "t"} for i in range(6)]
    cases = [
        ({"type": "text", "text": {"body": "x" * 4097}}, "text.body"),
        ({"type": "text", "text": {"body": "x" * 4096}, "image": {"id": "1"}}, "image"),
        ({"type": "text"}, "text"),
        ({"type": "voice", "voice": {}}, "type"),
        ({"type": "text", "text": {"body": "hi", "bold": True}}, "text.bold"),
        ({"type": "image", "image": {"id": "1", "link": "https://a.io/x"}}, "image"),
        ({"type": "image", "image": {}}, "image"),
        ({"type": "image", "image": {"link": "ftp://a.io/x"}}, "image.link"),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "?"},
                    "action": {"buttons": four},
                },
            },
            "interactive.action.buttons",
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "?"},
                    "action": {
                        "buttons": [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]
                    },
                },
            },
            "interactive.action.buttons[0].reply.title",
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "body": {"text": "?"},
                    "action": {
                        "button": "B",
                        "sections": [{"title": "a", "rows": rows}, {"title": "b", "rows": rows}],
                    },
                },
            },
            "interactive.action.sections",
        ),
        ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "location.latitude"),
        (
            {"type": "template", "template": {"name": "Hello World", "language": {"code": "en"}}},
            "template.name",
        ),
    ]
    for body, path in cases:
        assert refused(**body) == (422, path), body
    with pytest.raises(ApiError) as exc:
        send(to="../etc", type="text", text={"body": "x"})
    assert exc.value.details["fields"][0]["path"] == "to"


async def test_a_body_full_of_escaped_quotes_is_refused_at_once() -> None:
    """The depth check is linear: the api's first one, a backtracking scan of strings, took
    seconds of CPU per request on 40 KB of `\\"` (every other request waited meanwhile)."""

    async def handler(request: web.Request) -> web.Response:
        try:
            await inputs.read_json(request)
        except ApiError as exc:
            return exc.response()
        return web.Response(text="parsed")

    app = web.Application(client_max_size=256 * 1024)
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        for body in (b'"' + b'\\"' * 20_000, b"[" * 40 + b"]" * 40):
            start = time.monotonic()
            answer = await exchange(port, request("POST", "/", [], body))
            assert answer.status == 400, answer
            assert time.monotonic() - start < 1.0
    finally:
        await runner.cleanup()


def test_depth_and_paths() -> None:
    assert not json_too_deep(b'{"a": [[["]]]]"]]]}', 4)
    assert json_too_deep(b'{"a": [[["]]]]"]]]}', 3)
    assert inputs.validation_path("Object missing required field `name` - at `$.text`") == (
        "text.name",
        "Object missing required field `name`",
    )
    assert inputs.validation_path("Expected `str`, got `int` - at `$.a[2].b`")[0] == "a[2].b"


def test_cursors_round_trip_and_refuse_forgeries() -> None:
    token = cursor.encode(42, "msg_1")
    assert cursor.decode(token, int, str) == [42, "msg_1"]
    for bad in ("%%%", cursor.encode("x", "y"), cursor.encode(1), "A" * 500):
        with pytest.raises(ApiError) as exc:
            cursor.decode(bad, int, str)
        assert exc.value.status == 422


def test_keys_and_roles() -> None:
    key_id, key, digest = new_key()
    assert key.startswith("wak_") and key_id.startswith("key_") and digest == hash_key(key)
    assert key not in digest
    viewer = Principal("key", "key_1", "biz_1", "viewer")
    assert require_key(viewer, "GET", ("admin", "agent", "viewer")) == "biz_1"
    for method, roles in (("POST", ("admin", "agent", "viewer")), ("GET", ("admin",))):
        with pytest.raises(ApiError) as exc:
            require_key(viewer, method, roles)
        assert exc.value.status == 403
    with pytest.raises(ApiError):
        require_platform(viewer)
    with pytest.raises(ApiError):
        require_key(Principal("platform"), "GET", ("admin",))


def test_the_bucket_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = Buckets(rate=100, burst=200, clock=lambda: now[0])
    assert all(buckets.take("k") == 0 for _ in range(200))
    assert buckets.take("k") > 0
    assert buckets.take("other") == 0  # per key
    now[0] += 0.05  # five tokens back
    assert sum(buckets.take("k") == 0 for _ in range(10)) == 5
    with pytest.raises(ApiError) as exc:
        buckets.check("k")
    assert exc.value.code == "rate_limited" and exc.value.headers["Retry-After"] == "1"


def test_the_openapi_document_has_every_route_and_its_schemas() -> None:
    document = openapi.document(ROUTES)
    assert document["openapi"] == "3.1.0"
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert str(route.status) in operation["responses"]
        for name in re.findall(r"{([a-z_]+)}", route.path):
            assert any(p["name"] == name and p["in"] == "path" for p in operation["parameters"])
        if route.request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]
    # The contract's paths, exactly.
    contract = {
        ("POST", "/v1/businesses"), ("GET", "/v1/businesses"),
        ("GET", "/v1/businesses/{business_id}"),
        ("POST", "/v1/businesses/{business_id}/numbers"),
        ("PATCH", "/v1/businesses/{business_id}/numbers/{phone_number_id}"),
        ("POST", "/v1/businesses/{business_id}/api-keys"),
        ("DELETE", "/v1/businesses/{business_id}/api-keys/{key_id}"),
        ("POST", "/v1/api-keys"), ("GET", "/v1/api-keys"), ("DELETE", "/v1/api-keys/{key_id}"),
        ("GET", "/v1/numbers"), ("GET", "/v1/numbers/{phone_number_id}"),
        ("POST", "/v1/messages"), ("GET", "/v1/messages/{message_id}"),
        ("GET", "/v1/conversations"), ("GET", "/v1/conversations/{conversation_id}"),
        ("GET", "/v1/conversations/{conversation_id}/messages"),
        ("GET", "/v1/contacts"), ("POST", "/v1/contacts"),
        ("GET", "/v1/contacts/{contact_id}"), ("PATCH", "/v1/contacts/{contact_id}"),
        ("PUT", "/v1/numbers/{phone_number_id}/bot"), ("GET", "/v1/numbers/{phone_number_id}/bot"),
        ("POST", "/v1/numbers/{phone_number_id}/bot/simulate"),
    }  # fmt: skip
    served = {(r.method, r.path) for r in ROUTES}
    assert contract <= served
