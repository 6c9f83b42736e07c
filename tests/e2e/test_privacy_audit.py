"""The audit of reads (docs/privacy.md, *Audit*): reading a contact, their conversation, its
messages and their export through the API records who read what, once per actor, contact
and kind a minute, with ids and roles only; an admin lists them at
`GET /v1/contacts/{id}/accesses`; another business's admin gets 404, an agent 403."""

from __future__ import annotations

import json
import time
import uuid

from shared.events.business import access_stream
from tests.e2e.api_support import make_tenant
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for


def test_reads_of_a_contact_are_listed_with_who_and_what_and_nothing_personal(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    other = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    customer = new_customer()
    name = f"Ottavia Lanzillotta {uuid.uuid4().hex[:6]}"
    said = f"where is order {uuid.uuid4().hex[:8]}"
    tenant.webhook(number, customer, said, name=name)

    def listed() -> list[dict[str, object]]:
        answer = tenant.call("GET", "/v1/conversations")
        assert answer.status == 200, answer
        return [c for c in answer.json["data"] if c["contact"].get("wa_id") == customer]

    wait_for(lambda: listed() != [], timeout=30, message="the conversation in the read model")
    [conversation] = listed()
    conversation_id = str(conversation["id"])
    contact_id = str(conversation["contact"]["id"])  # type: ignore[index]
    keys = {k["role"]: k["id"] for k in tenant.call("GET", "/v1/api-keys").json["data"]}
    accesses = f"/v1/contacts/{contact_id}/accesses"
    # The contacts read model may be a moment behind the conversations one.
    wait_for(
        lambda: tenant.call("GET", accesses).status == 200, message="the contact in the read model"
    )
    # The admin's lists showed the contact: one `list` entry, however many times they listed
    # in the hour.
    shown = [(a["actor"], a["what"]) for a in tenant.call("GET", accesses).json["data"]]
    assert shown == [(keys["admin"], "list")], shown

    window = int(time.time() // 60)
    for _ in range(3):  # three reads of the conversation in one minute: one event
        assert (
            tenant.call("GET", f"/v1/conversations/{conversation_id}", role="agent").status == 200
        )
    assert (
        tenant.call("GET", f"/v1/conversations/{conversation_id}/messages", role="viewer").status
        == 200
    )
    assert tenant.call("GET", f"/v1/contacts/{contact_id}", role="agent").status == 200
    assert tenant.call("GET", f"/v1/contacts/{contact_id}/export").status == 200
    # A search that finds them is a list read of the agent's.
    found = tenant.call("GET", f"/v1/contacts?q={customer}", role="agent")
    assert [c["id"] for c in found.json["data"]] == [contact_id]
    same_minute = int(time.time() // 60) == window

    answer = tenant.call("GET", accesses)
    assert answer.status == 200, answer
    seen = [(a["actor"], a["role"], a["what"]) for a in answer.json["data"]]
    expected = {
        (keys["agent"], "agent", "conversation"),
        (keys["viewer"], "viewer", "messages"),
        (keys["agent"], "agent", "contact"),
        (keys["admin"], "admin", "export"),
        (keys["admin"], "admin", "list"),
        (keys["agent"], "agent", "list"),
    }
    assert set(seen) == expected, seen
    if same_minute:
        assert len(seen) == 6, seen
    assert seen[0] == (keys["agent"], "agent", "list")  # newest first
    assert all(a["at"] for a in answer.json["data"])
    # Nothing personal in the answer nor in the stored rows of the audit.
    rows = running.sql(
        "SELECT data::text AS d, metadata::text AS m FROM events WHERE stream_name = $1",
        access_stream(tenant.id, contact_id),
    )
    assert len(rows) == len(seen)
    stored = json.dumps(answer.json) + "".join(r["d"] + r["m"] for r in rows)
    for needle in (customer, name, said):
        assert needle not in stored
    # Admins only; another business's admin does not learn the contact exists.
    assert tenant.call("GET", accesses, role="agent").status == 403
    hidden = other.call("GET", accesses)
    assert hidden.status == 404 and hidden.json["error"]["code"] == "not_found", hidden
    assert tenant.call("GET", "/v1/contacts/ct_nobody/accesses").status == 404
    # The other business's failed look wrote nothing.
    assert len(tenant.call("GET", accesses).json["data"]) == len(seen)
