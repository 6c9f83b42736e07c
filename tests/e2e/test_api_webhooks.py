"""Webhooks to CRMs through the public api (`/v1/webhooks`, decision 0008), with the real
services: two businesses, each with its CRM (real HTTP servers in the test) registered with
its own key. A business's CRM receives its events and never another business's; a key of
one business gets 404 for every endpoint and delivery of the other, by any path, id or
filter; a secret is shown at creation and rotation only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import Fault, wait_for

TIMEOUT = 60.0
EXPECTED = ["message.received", "conversation.reply", "message.sent"]


@pytest.fixture
def crms() -> Iterator[tuple[FakeCRM, FakeCRM]]:
    a, b = FakeCRM().start(), FakeCRM().start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def tenants(running: Running) -> Iterator[tuple[Tenant, Tenant]]:
    a, b = make_tenant(running, numbers=1), make_tenant(running, numbers=1)
    yield a, b
    for tenant in (a, b):  # later tests' events must not queue for CRMs that are gone
        for endpoint in tenant.call("GET", "/v1/webhooks/endpoints?limit=200").json["data"]:
            tenant.call("DELETE", f"/v1/webhooks/endpoints/{endpoint['id']}")


def register(tenant: Tenant, crm: FakeCRM, **body: Any) -> dict[str, Any]:
    answer = tenant.call("POST", "/v1/webhooks/endpoints", {"url": crm.endpoint_url, **body})
    assert answer.status == 201, answer
    return dict(answer.json)


def talk(tenant: Tenant, text: str) -> str:
    """A customer writes to the tenant's number; returns the conversation id."""
    number = next(iter(tenant.numbers))
    customer = new_customer()
    tenant.webhook(number, customer, text)
    return tenant.conversation_id(number, customer)


def all_deliveries(tenant: Tenant, endpoint_id: str, limit: int = 2) -> list[dict[str, Any]]:
    """Every delivery of the endpoint, page by page (small pages: the cursor is exercised)."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/v1/webhooks/endpoints/{endpoint_id}/deliveries?limit={limit}"
        answer = tenant.call("GET", path + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status == 200, answer
        out += answer.json["data"]
        cursor = answer.json["next_cursor"]
        if cursor is None:
            return out


def test_a_business_crm_receives_its_events_and_never_another_business_s(
    running: Running, tenants: tuple[Tenant, Tenant], crms: tuple[FakeCRM, FakeCRM]
) -> None:
    (a, b), (crm_a, crm_b) = tenants, crms
    endpoint_a, endpoint_b = register(a, crm_a), register(b, crm_b)
    # The platform's unscoped endpoint belongs to the default business: it gets neither's.
    platform = running.relay_admin.create_endpoint(crm_a.endpoint_url, description="default")
    try:
        cid_a, cid_b = talk(a, "hello from a"), talk(b, "hello from b")
        for crm, cid in ((crm_a, cid_a), (crm_b, cid_b)):
            wait_for(
                lambda crm=crm, cid=cid: [e["type"] for e in crm.events(cid)] == EXPECTED,
                timeout=TIMEOUT,
                message=f"{cid}'s events at its CRM",
            )
        # Fence: B's events reached B's CRM, so their fan-out (which inserts every
        # endpoint's deliveries in one transaction) is done: A's endpoint and the platform's
        # have no delivery of B's conversation, nor A's CRM any request about it.
        conversations_a = {d["conversation"] for d in all_deliveries(a, endpoint_a["id"])}
        assert cid_a in conversations_a and cid_b not in conversations_a
        conversations_b = {d["conversation"] for d in all_deliveries(b, endpoint_b["id"])}
        assert conversations_b == {cid_b}  # B's endpoint is new: B's one conversation only
        platform_of = {d["conversation"] for d in running.relay_admin.deliveries(platform["id"])}
        assert cid_a not in platform_of and cid_b not in platform_of
        assert crm_a.events(cid_b) == [] and crm_b.events(cid_a) == []
        for rec in crm_a.webhooks():
            body = json.loads(rec.body)
            if body["data"].get("conversation_id") == cid_a:
                Webhook(endpoint_a["secret"]).verify(rec.body, rec.headers)

        # What the api shows of a delivery is what the CRM got, and a replay resends it.
        received = next(
            d for d in all_deliveries(a, endpoint_a["id"]) if d["conversation"] == cid_a
        )
        one = a.call("GET", f"/v1/webhooks/deliveries/{received['id']}")
        assert one.status == 200 and one.json["state"] == "succeeded"
        assert [r.body.decode() for r in crm_a.by_webhook_id(received["id"])] == [one.json["body"]]
        replay = a.call("POST", f"/v1/webhooks/deliveries/{received['id']}/replay")
        assert replay.status == 202 and replay.json["id"] == received["id"]
        wait_for(lambda: len(crm_a.by_webhook_id(received["id"])) == 2, timeout=TIMEOUT)

        # Replaying A's whole history to A's endpoint still sends only A's events.
        since = a.call("GET", f"/v1/webhooks/endpoints/{endpoint_a['id']}").json["created_at"]
        replayed = a.call(
            "POST", f"/v1/webhooks/endpoints/{endpoint_a['id']}/replay-since", {"since": since}
        )
        assert replayed.status == 202 and replayed.json["replayed"] >= 3, replayed
        conversations_a = {d["conversation"] for d in all_deliveries(a, endpoint_a["id"], 50)}
        assert cid_b not in conversations_a
    finally:
        running.relay_admin.delete_endpoint(platform["id"])


def test_a_key_gets_404_for_everything_of_another_business(
    running: Running, tenants: tuple[Tenant, Tenant], crms: tuple[FakeCRM, FakeCRM]
) -> None:
    (a, b), (crm_a, crm_b) = tenants, crms
    register(a, crm_a)
    endpoint_b = register(b, crm_b)
    crm_b.fail_always(Fault(status=500))  # B's deliveries end as dead letters
    cid_b = talk(b, "for b only")

    def dead_of_b() -> list[dict[str, Any]]:
        return b.call("GET", "/v1/webhooks/dead-letters").json["data"]

    wait_for(lambda: any(d["conversation"] == cid_b for d in dead_of_b()), timeout=TIMEOUT)
    dead = next(d for d in dead_of_b() if d["conversation"] == cid_b)
    before = b.call("GET", f"/v1/webhooks/endpoints/{endpoint_b['id']}").json

    e, d = f"/v1/webhooks/endpoints/{endpoint_b['id']}", f"/v1/webhooks/deliveries/{dead['id']}"
    attempts = [
        ("GET", e, None),
        ("PATCH", e, {"description": "mine now"}),
        ("POST", e + "/rotate-secret", None),
        ("POST", e + "/disable", {"reason": "no"}),
        ("POST", e + "/enable", None),
        ("POST", e + "/replay-dead", None),
        ("POST", e + "/replay-since", {"since": "2020-01-01T00:00:00Z"}),
        ("GET", e + "/deliveries", None),
        ("GET", d, None),
        ("POST", d + "/replay", None),
        ("GET", f"/v1/webhooks/dead-letters?endpoint_id={endpoint_b['id']}", None),
        ("DELETE", e, None),
    ]
    for method, path, body in attempts:
        answer = a.call(method, path, body)
        assert answer.status == 404, (method, path, answer)
        assert answer.json["error"]["code"] == "not_found"
    # Nor do A's listings show anything of B's.
    listed = a.call("GET", "/v1/webhooks/endpoints").json["data"]
    assert endpoint_b["id"] not in {x["id"] for x in listed} and len(listed) == 1
    assert all(
        x["conversation"] != cid_b for x in a.call("GET", "/v1/webhooks/dead-letters").json["data"]
    )
    # B's endpoint is as it was, its dead letter still dead (nothing replayed it).
    after = b.call("GET", f"/v1/webhooks/endpoints/{endpoint_b['id']}").json
    assert {k: after[k] for k in ("url", "description", "enabled", "secret_fingerprints")} == {
        k: before[k] for k in ("url", "description", "enabled", "secret_fingerprints")
    }
    assert b.call("GET", d).json["state"] == "dead"
    # Webhooks are for admin keys: an agent or viewer of B itself is 403.
    for role in ("agent", "viewer"):
        assert b.call("GET", "/v1/webhooks/endpoints", role=role).status == 403
    # And B's own key replays its dead letter once its CRM is back.
    crm_b.clear_faults()
    replayed = b.call("POST", e + "/replay-dead")
    assert replayed.status == 202 and replayed.json["replayed"] >= 1
    wait_for(lambda: b.call("GET", d).json["state"] == "succeeded", timeout=TIMEOUT)


def test_a_secret_is_shown_at_creation_and_rotation_only(
    running: Running, tenants: tuple[Tenant, Tenant], crms: tuple[FakeCRM, FakeCRM]
) -> None:
    (a, _), (crm_a, _) = tenants, crms
    headers = {"Idempotency-Key": "crm-1"}
    body = {"url": crm_a.endpoint_url, "description": "CRM", "event_types": ["message.*"]}
    first = running.api("POST", "/v1/webhooks/endpoints", body, token=a.key, headers=headers)
    assert first.status == 201 and first.json["secret"].startswith("whsec_")
    secret = first.json["secret"]
    again = running.api("POST", "/v1/webhooks/endpoints", body, token=a.key, headers=headers)
    assert again.status == 201 and again.json == first.json  # the same endpoint, not a second
    endpoint = first.json["id"]
    path = f"/v1/webhooks/endpoints/{endpoint}"
    # The audit trail: the endpoint's events name the key that asked, and its role.
    keys = {k["name"]: k["id"] for k in a.call("GET", "/v1/api-keys").json["data"]}
    (row,) = running.sql(
        "SELECT metadata::text AS m FROM events"
        " WHERE stream_name = $1 AND type = 'EndpointCreated'",
        f"endpoint-{endpoint}",
    )
    metadata = json.loads(row["m"])
    assert (metadata["actor"], metadata["actor_role"]) == (keys["admin"], "admin")

    shown = [
        a.call("GET", "/v1/webhooks/endpoints"),
        a.call("GET", path),
        a.call("PATCH", path, {"description": "CRM (renamed)"}),
        a.call("POST", path + "/disable"),
        a.call("POST", path + "/enable"),
    ]
    for answer in shown:
        assert answer.status == 200, answer
        text = json.dumps(answer.json)
        assert secret not in text and '"secret"' not in text, answer
    assert len(a.call("GET", "/v1/webhooks/endpoints").json["data"]) == 1

    rotated = a.call("POST", path + "/rotate-secret")
    assert rotated.status == 200 and rotated.json["secret"].startswith("whsec_")
    assert rotated.json["secret"] != secret and rotated.json["previous_valid_until"]
    assert len(rotated.json["secret_fingerprints"]) == 2
    assert rotated.json["secret"] not in json.dumps(a.call("GET", path).json)

    # Invalid input is a 422 naming the field, whichever side checks it.
    for bad, field in (
        ({"url": "ftp://crm.example.com/"}, "url"),
        ({"url": crm_a.endpoint_url, "event_types": ["message.nope"]}, "event_types"),
        ({"url": crm_a.endpoint_url, "secret": "whsec_mine"}, "secret"),
    ):
        answer = a.call("POST", "/v1/webhooks/endpoints", bad)
        assert answer.status == 422, answer
        assert answer.json["error"]["fields"][0]["path"] == field, answer
    # Pages of endpoints, newest first, follow one another without a gap or a repeat.
    more = [register(a, crm_a, description=f"more {i}")["id"] for i in range(2)]
    pages, cursor = [], None
    while True:
        page = a.call(
            "GET", "/v1/webhooks/endpoints?limit=2" + (f"&cursor={cursor}" if cursor else "")
        )
        pages.append([e["id"] for e in page.json["data"]])
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert pages == [[more[1], more[0]], [endpoint]]
    types = a.call("GET", "/v1/webhooks/event-types")
    assert types.status == 200 and "message.received" in {t["type"] for t in types.json["data"]}
