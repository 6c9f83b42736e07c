"""A contact's notes through the API, against the whole stack: written by agents and admins,
read by every role, newest first, paged; deleted by their author or an admin; refused with
the field and the reason; another business's contact is a 404; reads are audited; a rebuild
of the read models gives the same notes (they live in the contact's stream). The erasure of
a contact with notes: tests/e2e/test_privacy.py."""

from __future__ import annotations

import uuid

from tests.e2e.api_support import make_tenant
from tests.e2e.harness import Running
from tests.support.fakes import wait_for


def test_notes_are_written_read_paged_and_deleted_by_the_right_people(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    wa_id = "39" + str(uuid.uuid4().int)[:10]
    made = tenant.call("POST", "/v1/contacts", {"wa_id": wa_id, "name": "Gino"})
    assert made.status == 201, made
    contact = made.json["id"]
    path = f"/v1/contacts/{contact}/notes"

    first = tenant.call("POST", path, {"text": "called about the invoice"}, role="agent")
    second = tenant.call("POST", path, {"text": "<b>VIP</b> customer"}, role="admin")
    assert first.status == 201 and second.status == 201, (first, second)
    assert first.json["author"] != second.json["author"]
    # Newest first, for every role; paged with a cursor.
    listed = tenant.call("GET", path, role="viewer")
    assert listed.status == 200, listed
    assert [n["text"] for n in listed.json["data"]] == ["<b>VIP</b> customer",
                                                         "called about the invoice"]  # fmt: skip
    page = tenant.call("GET", path + "?limit=1")
    assert len(page.json["data"]) == 1 and page.json["next_cursor"]
    rest = tenant.call("GET", path + f"?limit=1&cursor={page.json['next_cursor']}")
    assert [n["id"] for n in rest.json["data"]] == [first.json["id"]]

    # Refusals: a viewer writes nothing; empty, too long or unknown fields name the field.
    assert tenant.call("POST", path, {"text": "no"}, role="viewer").status == 403
    for body, field in (
        ({"text": ""}, "text"),
        ({"text": "x" * 4001}, "text"),
        ({"text": "ok", "pinned": True}, "pinned"),
        ({}, "text"),
    ):
        refused = tenant.call("POST", path, body, role="agent")
        assert refused.status == 422 and field in str(refused.json), (body, refused)
    assert tenant.call("POST", "/v1/contacts/ct_nobody/notes", {"text": "x"}).status == 404
    # Another business sees no contact, so no notes, and cannot write or delete them.
    other = make_tenant(running, numbers=1)
    assert other.call("GET", path).status == 404
    assert other.call("POST", path, {"text": "mine"}).status == 404
    assert other.call("DELETE", f"{path}/{first.json['id']}").status == 404

    # An agent deletes their own note, not the admin's; the admin deletes any.
    assert tenant.call("DELETE", f"{path}/{second.json['id']}", role="agent").status == 403
    assert tenant.call("DELETE", f"{path}/{first.json['id']}", role="agent").status == 204
    assert tenant.call("DELETE", f"{path}/{first.json['id']}", role="agent").status == 404
    assert tenant.call("DELETE", f"{path}/{second.json['id']}").status == 204
    assert tenant.call("GET", path).json["data"] == []

    # Reading notes is reading the contact's data: audited.
    wait_for(
        lambda: any(
            a["what"] == "notes"
            for a in tenant.call("GET", f"/v1/contacts/{contact}/accesses").json["data"]
        ),
        message="the read of the notes audited",
    )
