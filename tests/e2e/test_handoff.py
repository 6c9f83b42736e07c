"""Human handoff through the api, with the whole stack: the bot answers, a person takes the
conversation over (the bot is silent, proven by a fence once it is released), the agent's
reply reaches Meta, unread counts reset, release and close give it back to the bot; console
users and who may do what."""

from __future__ import annotations

import time
import uuid

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.support.fakes import wait_for


def _user(tenant: Tenant, role: str = "agent") -> dict[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    answer = tenant.call(
        "POST",
        "/v1/users",
        {"email": email, "name": "Ada", "role": role, "password": "correct horse battery"},
    )
    assert answer.status == 201, answer
    return dict(answer.json)


def _recorded(running: Running, wamid: str) -> None:
    """The conversation has recorded the customer's message (it was in the conversation's
    queue before anything published after this)."""
    wait_for(
        lambda: bool(running.events_of_type("CustomerWrote", wamid=wamid)),
        message=f"CustomerWrote {wamid}",
    )


def test_a_person_takes_over_the_bot_is_silent_and_release_gives_it_back(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    other = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "hello bot")
    wait_for(lambda: "echo: hello bot" in running.graph.texts_to(customer), message="bot reply")
    # Answered, so in the log: the api finds it at once, though its read models were idle
    # (a lookup that misses waits for them to reach the log's end before a 404).
    assert tenant.call("GET", f"/v1/conversations/{cid}").status == 200
    agent = _user(tenant)

    # Who may: another business's key sees no such conversation; a viewer may not.
    assert other.call("POST", f"/v1/conversations/{cid}/handoff", {}).status == 404
    assert tenant.call("POST", f"/v1/conversations/{cid}/handoff", {}, role="viewer").status == 403
    unknown = tenant.call("POST", f"/v1/conversations/{cid}/handoff", {"assignee": "usr_nobody"})
    assert unknown.status == 422 and unknown.json["error"]["fields"][0]["path"] == "assignee"
    assert tenant.call("POST", f"/v1/conversations/{cid}/handoff", {"x": 1}).status == 422
    # Another business's user cannot be assigned either.
    stranger = _user(other)
    refused = tenant.call("POST", f"/v1/conversations/{cid}/handoff", {"assignee": stranger["id"]})
    assert refused.status == 422

    waiting = tenant.call("POST", f"/v1/conversations/{cid}/handoff", {}, role="agent")
    assert waiting.status == 200, waiting
    assert (waiting.json["state"], waiting.json["assignee"]) == ("waiting", None)
    taken = tenant.call(
        "POST", f"/v1/conversations/{cid}/handoff", {"assignee": agent["id"]}, role="agent"
    )
    assert taken.status == 200, taken
    assert (taken.json["state"], taken.json["assignee"]) == ("agent", agent["id"])
    listed = tenant.call("GET", f"/v1/conversations?state=agent&assignee={agent['id']}").json
    assert [c["id"] for c in listed["data"]] == [cid]

    # The customer writes: recorded, not answered by the bot.
    wamid = tenant.webhook(number, customer, "is anyone there")
    _recorded(running, wamid)
    reply = tenant.call(
        "POST",
        "/v1/messages",
        {"phone_number_id": number, "to": customer, "type": "text", "text": {"body": "Ada here"}},
        role="agent",
    )
    assert reply.status == 202, reply
    wait_for(lambda: "Ada here" in running.graph.texts_to(customer), message="the agent's reply")
    seen = tenant.call("GET", f"/v1/conversations/{cid}").json
    assert seen["unread"] >= 1
    read = tenant.call("POST", f"/v1/conversations/{cid}/read", role="agent")
    assert read.status == 200 and read.json["unread"] == 0

    released = tenant.call("POST", f"/v1/conversations/{cid}/release", role="agent")
    assert released.status == 200 and released.json["state"] == "bot"
    assert released.json["assignee"] is None
    # The fence: the bot answers the next message, so the one before was handled for good.
    running.fence(customer, phone_number_id=number)
    texts = running.graph.texts_to(customer)
    assert "echo: is anyone there" not in texts
    assert texts.index("Ada here") < len(texts) - 1
    history = tenant.call("GET", f"/v1/conversations/{cid}/messages").json["data"]
    authors = [(m["author"], m["text"]) for m in history]
    assert ("agent", "Ada here") in authors
    assert ("customer", "is anyone there") in authors
    assert [a for a, t in authors if t == "is anyone there" or t == "Ada here"] == [
        "customer",
        "agent",
    ]

    # Closed: the customer's next message reopens it with the bot.
    closed = tenant.call("POST", f"/v1/conversations/{cid}/close", role="agent")
    assert closed.status == 200 and closed.json["state"] == "closed"
    running.fence(customer, phone_number_id=number)
    wait_for(
        lambda: tenant.call("GET", f"/v1/conversations/{cid}").json["state"] == "bot",
        timeout=5,
        message="reopened with the bot in the read model",
    )
    # A release of a conversation the bot already has is answered too, with no change.
    again = tenant.call("POST", f"/v1/conversations/{cid}/release")
    assert again.status == 200 and again.json["state"] == "bot"


def test_console_users_are_managed_by_admins(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    other = make_tenant(running, numbers=1)
    email = f"Agent-{uuid.uuid4().hex[:8]}@Example.com"
    body = {"email": email, "name": "Bo", "role": "agent", "password": "long enough pass"}
    weak = tenant.call("POST", "/v1/users", {**body, "password": "short"})
    assert weak.status == 422 and weak.json["error"]["fields"][0]["path"] == "password"
    assert tenant.call("POST", "/v1/users", body, role="agent").status == 403
    key = {"Idempotency-Key": uuid.uuid4().hex}
    made = tenant.call("POST", "/v1/users", body, headers=key)
    assert made.status == 201, made
    again = tenant.call("POST", "/v1/users", body, headers=key)  # a retry: the first answer
    assert (again.status, again.json) == (201, made.json)
    assert set(made.json) == {"id", "email", "name", "role", "language", "created_at"}
    assert made.json["email"] == email.lower()
    # Sign-in emails are unique in the deployment, in any case.
    assert other.call("POST", "/v1/users", {**body, "email": email.upper()}).status == 409
    listed = tenant.call("GET", "/v1/users").json["data"]
    assert [u["id"] for u in listed] == [made.json["id"]]
    assert "password" not in str(listed) and other.call("GET", "/v1/users").json["data"] == []
    assert other.call("DELETE", f"/v1/users/{made.json['id']}").status == 404
    assert tenant.call("DELETE", f"/v1/users/{made.json['id']}").status == 204
    assert tenant.call("GET", "/v1/users").json["data"] == []
    stored = running.sql("SELECT password_hash FROM api_users")
    assert all(r["password_hash"].startswith("scrypt$") for r in stored)


def _state(tenant: Tenant, cid: str) -> str:
    answer = tenant.call("GET", f"/v1/conversations/{cid}")
    assert answer.status in (200, 404), answer  # 404: not in the read model yet
    return str(answer.json.get("state", ""))


def _echo(tenant: Tenant, number: str, customer: str, text: str) -> str:
    """The business replying to `customer` from its WhatsApp phone app (Meta's
    smb_message_echoes, shaped as pywa's fixture); returns its wamid."""
    wamid = f"wamid.{uuid.uuid4().hex}"
    echo = {
        "from": "15550100",
        "to": customer,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": number},
        "contacts": [{"profile": {"name": "Grace"}, "wa_id": customer}],
        "message_echoes": [echo],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": tenant.numbers[number],
                "changes": [{"value": value, "field": "smb_message_echoes"}],
            }
        ],
    }
    status, body = tenant.running.post(payload)
    assert status == 200, body
    return wamid


def test_a_reply_from_the_phone_app_or_an_agent_starting_takes_the_conversation(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "hello bot")
    wait_for(lambda: "echo: hello bot" in running.graph.texts_to(customer), message="bot reply")

    # The owner answers from the phone: the bot stops, the console shows a person's message.
    wamid = _echo(tenant, number, customer, "Grace here, from the shop")
    wait_for(
        lambda: _state(tenant, cid) == "waiting",
        message="handed off by the phone app",
    )
    handed = running.events_of_type("HandedOff", request_id=f"phone-app:{wamid}")
    assert [(e["by"], e["reason"]) for e in handed] == [("phone-app", "phone_app_reply")]
    history = tenant.call("GET", f"/v1/conversations/{cid}/messages").json["data"]
    mine = [m for m in history if m["text"] == "Grace here, from the shop"]
    assert [(m["author"], m["direction"], m["status"]) for m in mine] == [
        ("agent", "outbound", "sent")
    ]
    # The customer's next message is not the bot's; the echo was never sent again by us.
    later = tenant.webhook(number, customer, "thanks Grace")
    _recorded(running, later)
    assert tenant.call("POST", f"/v1/conversations/{cid}/release").status == 200
    running.fence(customer, phone_number_id=number)
    texts = running.graph.texts_to(customer)
    assert "echo: thanks Grace" not in texts and "Grace here, from the shop" not in texts
    assert running.events_of_type("EchoReceived", wamid=wamid)

    # An agent writing into the bot's conversation takes it (an agent's key: waiting).
    sent = tenant.call(
        "POST",
        "/v1/messages",
        {"phone_number_id": number, "to": customer, "type": "text", "text": {"body": "Hi, Bo"}},
        role="agent",
    )
    assert sent.status == 202, sent
    wait_for(
        lambda: _state(tenant, cid) == "waiting",
        message="handed off by the agent's message",
    )
    after = tenant.webhook(number, customer, "hi Bo")
    _recorded(running, after)
    assert tenant.call("POST", f"/v1/conversations/{cid}/release").status == 200
    running.fence(customer, phone_number_id=number)
    assert "echo: hi Bo" not in running.graph.texts_to(customer)
