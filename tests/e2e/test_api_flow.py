"""The api with the rest of the stack: pagination over 500 conversations, the rebuild of
the read models, sends surviving a SIGKILL of the api mid-burst, and (once dedup routes by
business and the conversation sends business messages) webhooks of two businesses with two
numbers each, sends of every type in the window, and statuses reaching `read`."""

from __future__ import annotations

import concurrent.futures
import inspect
import subprocess
import sys
import time
from typing import Any

import pytest

from services.conversation import handlers as conversation_handlers
from shared.payloads import status_payload
from shared.stack import ROOT
from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.support.fakes import wait_for

TEMPLATE = {"name": "hello_world", "language": {"code": "en_US"}}
CONVERSATION_SENDS = "SendBusinessMessage" in inspect.getsource(conversation_handlers)


def template_to(tenant: Tenant, number: str, customer: str, role: str = "admin", **kw: Any) -> Any:
    return tenant.call(
        "POST",
        "/v1/messages",
        {"phone_number_id": number, "to": customer, "type": "template", "template": TEMPLATE},
        role=role,
        **kw,
    )


def routed(running: Running, tenant: Tenant) -> bool:
    """Does dedup record the business of a number (the lead's routing work)?"""
    number = next(iter(tenant.numbers))
    customer = new_customer()
    wamid = tenant.webhook(number, customer, "probe")
    wait_for(
        lambda: bool(running.events_of_type("MessageReceived", wamid=wamid)),
        message="the probe recorded",
    )
    return running.events_of_type("MessageReceived", wamid=wamid)[0].get("business_id") == tenant.id


def test_pagination_over_500_conversations(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    extra = tenant.call("POST", "/v1/api-keys", {"name": "bulk", "role": "agent"}).json["key"]
    tenant.keys["bulk"] = extra
    roles = ("admin", "agent", "bulk")  # three keys: three buckets' bursts
    sent: set[str] = set()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: template_to(tenant, number, new_customer(), role=roles[i % 3]),
                range(500),
            )
        )
    assert [a.status for a in answers] == [202] * 500
    sent = {a.json["conversation_id"] for a in answers}
    seen: list[str] = []
    cursor = None
    while True:
        path = "/v1/conversations?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = tenant.call("GET", path, role="viewer")
        assert page.status == 200, page
        seen += [c["id"] for c in page.json["data"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 500 and set(seen) == sent
    small = tenant.call("GET", "/v1/conversations?limit=7", role="viewer").json
    assert len(small["data"]) == 7 and small["next_cursor"]


def test_rebuild_read_models_gives_the_same_answers(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    sent = [template_to(tenant, number, new_customer()) for _ in range(3)]
    assert [a.status for a in sent] == [202] * 3
    # Once Meta has them all, nothing more changes these conversations: compare from there.
    for answer in sent:
        message = f"/v1/messages/{answer.json['id']}"
        wait_for(lambda m=message: tenant.call("GET", m).json["status"] == "sent", timeout=30)
    before = tenant.call("GET", "/v1/conversations", role="viewer").json
    # A contact's notes are rebuilt from its (sealed) stream too.
    contact = tenant.call("POST", "/v1/contacts", {"wa_id": new_customer()}).json["id"]
    for text in ("first note", "second note"):
        assert tenant.call("POST", f"/v1/contacts/{contact}/notes", {"text": text}).status == 201
    notes_before = tenant.call("GET", f"/v1/contacts/{contact}/notes").json
    assert [n["text"] for n in notes_before["data"]] == ["second note", "first note"]
    result = subprocess.run(
        [sys.executable, "-m", "ops", "rebuild-read-models"],
        cwd=ROOT,
        env=running.stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "api.conversations: rebuilt" in result.stdout
    wait_for(
        lambda: tenant.call("GET", "/v1/conversations", role="viewer").json == before,
        message="the rebuilt read model to answer as before",
    )
    wait_for(
        lambda: tenant.call("GET", f"/v1/contacts/{contact}/notes").json == notes_before,
        message="the rebuilt notes as before",
    )


def test_the_api_killed_mid_burst_loses_no_accepted_message(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customers = [new_customer() for _ in range(120)]

    def one(customer: str) -> tuple[str, Any]:
        try:
            # The business's own backend (an admin key): an agent writing first would own
            # the conversation, and the fences below need the bot to answer.
            return customer, template_to(tenant, number, customer, role="admin")
        except OSError as exc:  # the api died under this request
            return customer, exc

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, c) for c in customers]
        # Mid-burst: once some have been answered, while others are in flight.
        wait_for(lambda: sum(f.done() for f in futures) >= 20, timeout=30, interval=0.005)
        running.stack.kill("api")
        results = [f.result() for f in futures]
    running.restart("api")
    accepted = {
        c: a.json["id"] for c, a in results if not isinstance(a, OSError) and a.status == 202
    }
    assert accepted, "no send was accepted before the kill"
    # Every 202 is durable, once.
    for message_id in accepted.values():
        assert [t for t, _ in running.events(f"request-{message_id}")] == ["MessageRequested"]
    # And the dispatcher hands every one on (its checkpoint passes them all).
    last = max(
        running.sql(
            "SELECT transaction_id::text::bigint AS t, global_position AS g FROM events"
            " WHERE stream_name = ANY($1::text[])",
            [f"request-{m}" for m in accepted.values()],
        ),
        key=lambda r: (r["t"], r["g"]),
    )

    def dispatched() -> bool:
        rows = running.sql(
            "SELECT transaction_id, global_position FROM subscription_checkpoints"
            " WHERE name = 'api.dispatcher'"
        )
        return bool(rows) and (rows[0]["transaction_id"], rows[0]["global_position"]) >= (
            last["t"],
            last["g"],
        )

    wait_for(dispatched, timeout=30, message="the dispatcher past every accepted message")
    if not CONVERSATION_SENDS:
        return
    # With the conversation side: each accepted message reaches Meta exactly once.
    for customer in accepted:
        wait_for(lambda c=customer: len(running.graph.sent_to(c)) >= 1, timeout=30)
    running.fences({c: number for c in accepted})  # anything more would be out by now
    for customer in accepted:
        assert [m["body"].get("type") for m in running.graph.sent_to(customer)].count(
            "template"
        ) == 1


@pytest.fixture(scope="module")
def businesses(running: Running) -> tuple[Tenant, Tenant]:
    return make_tenant(running, numbers=2), make_tenant(running, numbers=2)


def test_webhooks_of_two_businesses_and_sends_of_every_type(
    running: Running, businesses: tuple[Tenant, Tenant]
) -> None:
    a, b = businesses
    if not routed(running, a):
        pytest.skip("dedup does not record the number's business yet (the lead's routing)")
    started = {}
    customers: dict[tuple[str, str], str] = {}
    for tenant in (a, b):
        for number in tenant.numbers:
            customer = new_customer()
            customers[(tenant.id, number)] = customer
            started[(tenant.id, number)] = time.monotonic()
            tenant.webhook(number, customer, f"hello {number}")
    for tenant in (a, b):
        for number in tenant.numbers:
            customer = customers[(tenant.id, number)]
            conversation = tenant.conversation(number, customer, within=5)
            assert conversation["window_open_until"] is not None
            assert conversation["contact"]["wa_id"] == customer
            other = b if tenant is a else a
            assert (
                other.call(
                    "GET", f"/v1/conversations/{tenant.conversation_id(number, customer)}"
                ).status
                == 404
            )
    if not CONVERSATION_SENDS:
        pytest.skip("the conversation does not send business messages yet (the lead's work)")
    number = next(iter(a.numbers))
    customer = customers[(a.id, number)]
    bodies = [
        {"type": "text", "text": {"body": "hi"}},
        {"type": "image", "image": {"link": "https://example.com/a.jpg", "caption": "c"}},
        {"type": "audio", "audio": {"id": "1"}},
        {"type": "video", "video": {"id": "1"}},
        {"type": "document", "document": {"id": "1", "filename": "a.pdf"}},
        {"type": "sticker", "sticker": {"id": "1"}},
        {"type": "location", "location": {"latitude": 1.0, "longitude": 2.0}},
        {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann"}}]},
        {"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
         "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}},
        {"type": "template", "template": TEMPLATE},
    ]  # fmt: skip
    ids = []
    for body in bodies:
        answer = a.call("POST", "/v1/messages", {"phone_number_id": number, "to": customer, **body})
        assert answer.status == 202, answer
        ids.append(answer.json["id"])
    # Each is handed to the conversation by the api's dispatcher, then sent by outbound.
    for message_id in ids:
        wait_for(
            lambda m=message_id: a.call("GET", f"/v1/messages/{m}").json["status"] != "queued",
            timeout=30,
            message=f"message {message_id} sent",
        )
    running.fence(customer, phone_number_id=number)
    sent_types = [m["body"].get("type") for m in running.graph.sent_to(customer)]
    for body in bodies:
        assert body["type"] in sent_types
    # Statuses reach read, forward only.
    view = a.call("GET", f"/v1/messages/{ids[0]}").json
    wait_for(lambda: a.call("GET", f"/v1/messages/{ids[0]}").json.get("wamid"), timeout=20)
    wamid = a.call("GET", f"/v1/messages/{ids[0]}").json["wamid"]
    for status in ("read", "delivered"):
        code, _ = running.post(status_payload(wamid, status, customer, phone_number_id=number))
        assert code == 200
    running.fence(customer, phone_number_id=number)
    wait_for(lambda: a.call("GET", f"/v1/messages/{ids[0]}").json["status"] == "read", timeout=10)
    assert view["conversation_id"] == a.conversation_id(number, customer)
    history = a.call(
        "GET", f"/v1/conversations/{a.conversation_id(number, customer)}/messages"
    ).json["data"]
    assert history[0]["direction"] == "inbound"
    assert {m["id"] for m in history} >= set(ids)
