"""The api as a real process (tests/e2e/harness.py): businesses, numbers and keys through
the platform token, what a business key may and may not reach, idempotent creates, the
window, and what the secrets never appear in."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.api_support import Tenant, make_tenant, meta_id, new_customer
from tests.e2e.harness import ADMIN_TOKEN, Running


@pytest.fixture(scope="module")
def two(running: Running) -> tuple[Tenant, Tenant]:
    return make_tenant(running), make_tenant(running)


def test_openapi_is_served_without_auth_and_names_every_route(running: Running) -> None:
    answer = running.api("GET", "/v1/openapi.json", token=None)
    assert answer.status == 200
    assert answer.json["openapi"].startswith("3.1")
    assert "/v1/messages" in answer.json["paths"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_business_its_number_and_keys(running: Running, two: tuple[Tenant, Tenant]) -> None:
    a, _ = two
    got = running.api("GET", f"/v1/businesses/{a.id}")
    assert got.status == 200 and got.json["id"] == a.id
    assert set(got.json) >= {"id", "name", "messaging_limit", "created_at"}
    assert got.json["created_at"].endswith("Z")
    numbers = a.call("GET", "/v1/numbers", role="viewer")
    assert numbers.status == 200
    assert {n["phone_number_id"] for n in numbers.json["data"]} == set(a.numbers)
    text = json.dumps(numbers.json)
    assert "token-" not in text and "access_token" not in text
    # The secret is in no event either.
    for number in a.numbers:
        assert not running.sql("SELECT 1 FROM events WHERE data::text LIKE $1", f"%token-{number}%")


def test_a_number_is_taken_once_and_a_waba_belongs_to_one_business(
    running: Running, two: tuple[Tenant, Tenant]
) -> None:
    a, b = two
    number = next(iter(a.numbers))
    again = running.api(
        "POST",
        f"/v1/businesses/{b.id}/numbers",
        {"phone_number_id": number, "waba_id": meta_id(), "access_token": "x"},
    )
    assert again.status == 409 and again.json["error"]["code"] == "number_taken"
    waba = running.api(
        "POST",
        f"/v1/businesses/{b.id}/numbers",
        {"phone_number_id": meta_id(), "waba_id": a.numbers[number], "access_token": "x"},
    )
    assert waba.status == 409 and waba.json["error"]["code"] == "waba_taken"


def test_patch_a_number(running: Running, two: tuple[Tenant, Tenant]) -> None:
    a, _ = two
    number = next(iter(a.numbers))
    answer = running.api(
        "PATCH",
        f"/v1/businesses/{a.id}/numbers/{number}",
        {"persona": "You are Ada.", "send_rate_per_second": 20, "access_token": "new-token"},
    )
    assert answer.status == 200, answer
    assert answer.json["persona"] == "You are Ada." and answer.json["send_rate_per_second"] == 20
    assert "new-token" not in json.dumps(answer.json)
    # A business rotates to a token Meta accepts: later tests of this business send with it
    # (and sync its templates with it).
    running.graph.tokens[number] = "new-token"


def test_auth_and_roles(running: Running, two: tuple[Tenant, Tenant]) -> None:
    a, _ = two
    assert running.api("GET", "/v1/numbers", token=None).status == 401
    assert running.api("GET", "/v1/numbers", token="wak_nope").status == 401
    assert running.api("GET", "/v1/numbers", token=ADMIN_TOKEN).status == 403
    assert a.call("GET", "/v1/businesses").status == 403
    assert (
        a.call("POST", "/v1/api-keys", {"name": "x", "role": "viewer"}, role="agent").status == 403
    )
    viewer = a.call("POST", "/v1/messages", {"to": "1", "type": "text"}, role="viewer")
    assert viewer.status == 403 and viewer.json["error"]["code"] == "forbidden"


def test_a_revoked_key_is_refused_from_then_on(
    running: Running, two: tuple[Tenant, Tenant]
) -> None:
    a, _ = two
    issued = a.call("POST", "/v1/api-keys", {"name": "temp", "role": "viewer"})
    assert issued.status == 201 and issued.json["key"].startswith("wak_")
    key = issued.json["key"]
    assert running.api("GET", "/v1/numbers", token=key).status == 200
    assert a.call("DELETE", f"/v1/api-keys/{issued.json['id']}").status == 204
    assert running.api("GET", "/v1/numbers", token=key).status == 401
    hashes = running.sql("SELECT key_hash FROM api_keys WHERE key_id = $1", issued.json["id"])
    assert hashes and key not in hashes[0]["key_hash"]


def test_another_business_is_not_found_by_any_path(
    running: Running, two: tuple[Tenant, Tenant]
) -> None:
    a, b = two
    b_number = next(iter(b.numbers))
    b_key = b.call("POST", "/v1/api-keys", {"name": "b", "role": "viewer"}).json["id"]
    customer = new_customer()
    sent = b.call(
        "POST",
        "/v1/messages",
        {"phone_number_id": b_number, "to": customer, "type": "template",
         "template": {"name": "hello_world", "language": {"code": "en_US"}}},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert sent.status == 202, sent
    b_message, b_conversation = sent.json["id"], sent.json["conversation_id"]
    b_contact = b.call("POST", "/v1/contacts", {"wa_id": new_customer()}).json["id"]
    refused = [
        a.call("GET", f"/v1/numbers/{b_number}"),
        a.call("GET", f"/v1/messages/{b_message}"),
        a.call("GET", f"/v1/conversations/{b_conversation}"),
        a.call("GET", f"/v1/conversations/{b_conversation}/messages"),
        a.call("GET", f"/v1/contacts/{b_contact}"),
        a.call("PATCH", f"/v1/contacts/{b_contact}", {"tags": ["x"]}),
        a.call("DELETE", f"/v1/api-keys/{b_key}"),
        a.call("GET", f"/v1/conversations?phone_number_id={b_number}"),
        a.call(
            "POST",
            "/v1/messages",
            {
                "phone_number_id": b_number,
                "to": customer,
                "type": "template",
                "template": {"name": "hello_world", "language": {"code": "en_US"}},
            },
        ),
    ]
    assert [r.status for r in refused] == [404] * len(refused), [r.json for r in refused]
    assert all(r.json["error"]["code"] == "not_found" for r in refused)
    # The other business's rows are in no list either.
    assert b_conversation not in {c["id"] for c in a.call("GET", "/v1/conversations").json["data"]}
    assert b_contact not in {c["id"] for c in a.call("GET", "/v1/contacts").json["data"]}
    # And b still has them all.
    assert b.call("GET", f"/v1/messages/{b_message}").json["status"] in ("queued", "sent")


def test_idempotent_creates(running: Running) -> None:
    key = uuid.uuid4().hex
    body = {"name": f"idem {key[:6]}"}
    first = running.api("POST", "/v1/businesses", body, headers={"Idempotency-Key": key})
    again = running.api("POST", "/v1/businesses", body, headers={"Idempotency-Key": key})
    assert first.status == again.status == 201
    assert first.json == again.json
    other = running.api(
        "POST", "/v1/businesses", {"name": "else"}, headers={"Idempotency-Key": key}
    )
    assert other.status == 422 and other.json["error"]["code"] == "idempotency_key_reused"
    assert len(running.sql("SELECT 1 FROM directory_businesses WHERE name = $1", body["name"])) == 1


def test_an_idempotent_send_is_one_message(running: Running, two: tuple[Tenant, Tenant]) -> None:
    a, _ = two
    number = next(iter(a.numbers))
    body = {"phone_number_id": number, "to": new_customer(), "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}}  # fmt: skip
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = a.call("POST", "/v1/messages", body, role="agent", headers=key)
    again = a.call("POST", "/v1/messages", body, role="agent", headers=key)
    assert first.status == again.status == 202 and first.json == again.json
    assert first.json["status"] == "queued"
    changed = a.call(
        "POST", "/v1/messages", {**body, "to": new_customer()}, role="agent", headers=key
    )
    assert changed.status == 422 and changed.json["error"]["code"] == "idempotency_key_reused"
    events = running.events(f"request-{first.json['id']}")
    assert [t for t, _ in events] == ["MessageRequested"]
    assert events[0][1]["author"] == "agent"
    # Read your writes: the message is there at once.
    got = a.call("GET", f"/v1/messages/{first.json['id']}", role="viewer")
    assert got.status == 200 and got.json["conversation_id"] == first.json["conversation_id"]


def test_free_form_outside_the_window_is_refused(
    running: Running, two: tuple[Tenant, Tenant]
) -> None:
    a, _ = two
    number = next(iter(a.numbers))
    answer = a.call(
        "POST",
        "/v1/messages",
        {"phone_number_id": number, "to": new_customer(), "type": "text", "text": {"body": "hi"}},
    )
    assert answer.status == 409, answer
    assert answer.json["error"]["code"] == "window_closed"
    assert answer.json["error"]["window_closed_at"] is None


def test_invalid_bodies_name_the_field(running: Running, two: tuple[Tenant, Tenant]) -> None:
    a, _ = two
    number = next(iter(a.numbers))
    long = a.call(
        "POST",
        "/v1/messages",
        {"phone_number_id": number, "to": "123456", "type": "text", "text": {"body": "x" * 4097}},
    )
    assert long.status == 422 and long.json["error"]["fields"][0]["path"] == "text.body"
    malformed = a.call("POST", "/v1/messages", raw=b"{nope")
    assert malformed.status == 400 and malformed.json["error"]["code"] == "malformed_json"
    several = a.call("POST", "/v1/messages", {"to": "123456", "type": "template",
                     "template": {"name": "x", "language": {"code": "en"}}})  # fmt: skip
    assert several.status == 422 and several.json["error"]["fields"][0]["path"] == "phone_number_id"
