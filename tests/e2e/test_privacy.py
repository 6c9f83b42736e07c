"""Privacy end to end, through the real service processes with PRIVACY_ENCRYPTION on: a
customer writes (text and a photo), the business exports them, then erases them; after
`done`, every table of the database, every file of the media store and of the run folder
(logs included) and every API answer is searched for their number, name and texts, and
none has them. Meta's redelivery of their first message is dropped; their next message (the
fence) is answered and starts a new contact; a CRM receives `contact.erased`."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from shared.payloads import messages_payload, text_message
from tests.e2e.api_support import Tenant, make_tenant
from tests.e2e.harness import Running, new_customer, own_stack
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import wait_for
from tests.support.media_fakes import FakeGraphMedia

TIMEOUT = 45.0


@pytest.fixture(scope="module")
def sealed() -> Iterator[Running]:
    with own_stack(PRIVACY_ENCRYPTION="true") as running:
        yield running


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    fake = FakeCRM().start()
    yield fake
    fake.stop()


def leaks(running: Running, needles: list[str]) -> list[str]:
    found = []
    tables = running.sql(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    for table in (t["table_name"] for t in tables):
        binary = [
            r["column_name"]
            for r in running.sql(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = $1 AND data_type = 'bytea'",
                table,
            )
        ]
        for needle in needles:
            clauses = ["strpos(t::text, $1) > 0"] + [
                f"position(convert_to($1, 'UTF8') in t.\"{c}\") > 0" for c in binary
            ]
            [row] = running.sql(
                f'SELECT count(*) AS n FROM "{table}" t WHERE ' + " OR ".join(clauses), needle
            )
            if row["n"]:
                found.append(f"table {table}: {needle}")
    return found


def files_with(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in content or n in str(path)]
    return hits


def photo(
    running: Running, tenant: Tenant, number: str, customer: str, name: str, caption: str
) -> bytes:
    content = os.urandom(512)
    image = cast(FakeGraphMedia, running.graph).add_media(content, "image/jpeg")
    message = {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"id": image.media_id, "mime_type": "image/jpeg", "caption": caption},
    }
    payload = messages_payload([message], customer, number, name, tenant.numbers[number])
    assert running.post(payload)[0] == 200
    return content


def test_erasure_leaves_nothing_behind(sealed: Running, crm: FakeCRM) -> None:
    running = sealed
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    tenant.use_graph_token(number)
    # Retention: the business's own, checked.
    put = tenant.call("PUT", "/v1/privacy/retention", {"contacts_inactive_days": 365})
    assert put.status == 200 and put.json["effective_days"] == 365, put
    wrong = tenant.call("PUT", "/v1/privacy/retention", {"contacts_inactive_days": 0})
    assert wrong.status == 422 and "contacts_inactive_days" in json.dumps(wrong.json), wrong
    assert tenant.call("GET", "/v1/privacy/retention", role="agent").status == 403
    made = tenant.call(
        "POST",
        "/v1/webhooks/endpoints",
        {"url": crm.endpoint_url, "event_types": ["contact.erased"]},
    )
    assert made.status == 201, made
    endpoint = made.json
    customer = new_customer()
    name = f"Ludovica Santangelo {uuid.uuid4().hex[:6]}"
    said = f"my parcel {uuid.uuid4().hex[:10]} is lost"
    caption = f"the torn box {uuid.uuid4().hex[:10]}"
    first = text_message(
        said, customer=customer, phone_number_id=number, name=name,
        waba_id=tenant.numbers[number],
    )  # fmt: skip
    assert running.post(first)[0] == 200
    content = photo(running, tenant, number, customer, name, caption)
    wait_for(lambda: len(running.graph.texts_to(customer)) >= 2, timeout=TIMEOUT)
    wait_for(
        lambda: any(
            p.is_file() and p.read_bytes() == content for p in running.media_dir.rglob("*")
        ),
        timeout=TIMEOUT,
        message="the photo kept",
    )
    # Sealed at rest already: the event store holds neither the text nor the name.
    [row] = running.sql(
        "SELECT count(*) AS n FROM events WHERE strpos(data::text, $1) > 0 OR"
        " strpos(data::text, $2) > 0",
        said,
        name,
    )
    assert row["n"] == 0

    wait_for(
        lambda: len(tenant.call("GET", f"/v1/contacts?q={customer}").json["data"]) == 1,
        timeout=TIMEOUT,
        message="the contact",
    )
    contact_id = tenant.call("GET", f"/v1/contacts?q={customer}").json["data"][0]["id"]
    cid = tenant.conversation_id(number, customer)
    # No name holds their number while they are live: not the conversation id (the routing
    # key of every stage, and the API's id), no stream, no metric, no log line.
    assert customer not in cid and customer not in contact_id
    [row] = running.sql(
        "SELECT count(*) AS n FROM events WHERE strpos(stream_name, $1) > 0", customer
    )
    assert row["n"] == 0
    for service in ("ingress", "dedup", "conversation", "outbound", "media", "api"):
        port = running.stack.settings.port_of(service)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert customer.encode() not in resp.read(), service
    assert files_with(running.run_dir, [customer]) == []
    # A 404 (no "data") until the conversations read model has it: the contacts one may be
    # ahead of it.
    wait_for(
        lambda: (
            len(tenant.call("GET", f"/v1/conversations/{cid}/messages").json.get("data", [])) >= 4
        ),
        timeout=TIMEOUT,
    )

    # A note about them: personal data too, sealed in the contact's stream.
    remark = f"prefers calls after {uuid.uuid4().hex[:10]}"
    noted = tenant.call("POST", f"/v1/contacts/{contact_id}/notes", {"text": remark}, role="agent")
    assert noted.status == 201 and noted.json["text"] == remark, noted
    [row] = running.sql("SELECT count(*) AS n FROM events WHERE strpos(data::text, $1) > 0", remark)
    assert row["n"] == 0

    # The right of access: everything, as JSON, and with the photo as a zip.
    export = tenant.call("GET", f"/v1/contacts/{contact_id}/export")
    assert export.status == 200, export
    text = json.dumps(export.json)
    assert said in text and caption in text and name in text
    assert [n["text"] for n in export.json["notes"]] == [remark]
    assert tenant.call("GET", f"/v1/contacts/{contact_id}/export", role="agent").status == 403
    zipped = running_raw(running, tenant, f"/v1/contacts/{contact_id}/export?media=1")
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        names = archive.namelist()
        assert "export.json" in names
        [media] = [n for n in names if n.startswith("media/")]
        assert archive.read(media) == content

    # Another business cannot erase it (404), the business can (202), once.
    other = make_tenant(running, numbers=1)
    assert other.call("POST", f"/v1/contacts/{contact_id}/erase").status == 404
    asked = tenant.call("POST", f"/v1/contacts/{contact_id}/erase")
    assert asked.status == 202, asked
    erasure_id = asked.json["erasure_id"]
    assert tenant.call("POST", f"/v1/contacts/{contact_id}/erase").json["erasure_id"] == erasure_id
    assert other.call("GET", f"/v1/erasures/{erasure_id}").status == 404
    wait_for(
        lambda: tenant.call("GET", f"/v1/erasures/{erasure_id}").json["status"] == "done",
        timeout=TIMEOUT,
        message="the erasure done",
    )

    needles = [customer, name, said, caption, remark]
    assert leaks(running, needles) == []
    assert tenant.call("GET", f"/v1/contacts/{contact_id}/notes").status == 404
    assert files_with(running.media_dir, needles) == []
    assert files_with(running.run_dir, needles) == []  # the logs included
    assert tenant.call("GET", f"/v1/contacts/{contact_id}").status == 404
    assert tenant.call("GET", f"/v1/conversations/{cid}").status == 404
    for path in ("/v1/contacts", "/v1/conversations", f"/v1/contacts?q={customer}"):
        answer = tenant.call("GET", path)
        assert not [n for n in needles if n in json.dumps(answer.json)], path
    wait_for(lambda: len(crm.events()) >= 1, timeout=TIMEOUT, message="contact.erased")
    [erased] = crm.events()
    assert erased["type"] == "contact.erased" and erased["data"]["contact_id"] == contact_id
    assert customer not in json.dumps(erased)
    assert tenant.call("DELETE", f"/v1/webhooks/endpoints/{endpoint['id']}").status == 204

    # Meta redelivers the first message: recognised and dropped. The fence: the customer's
    # next message is answered, in a new conversation of a new contact.
    replies = len(running.graph.texts_to(customer))
    assert running.post(first)[0] == 200
    marker = f"again {uuid.uuid4().hex}"
    again = text_message(
        marker, customer=customer, phone_number_id=number, name=name,
        waba_id=tenant.numbers[number],
    )  # fmt: skip
    assert running.post(again)[0] == 200
    wait_for(lambda: any(marker in t for t in running.graph.texts_to(customer)), timeout=TIMEOUT)
    assert len(running.graph.texts_to(customer)) == replies + 1  # none for the redelivery
    wait_for(
        lambda: len(tenant.call("GET", f"/v1/contacts?q={customer}").json["data"]) == 1,
        timeout=TIMEOUT,
    )
    [fresh] = tenant.call("GET", f"/v1/contacts?q={customer}").json["data"]
    assert fresh["id"] != contact_id and fresh["wa_id"] == customer
    assert leaks(running, [said, caption]) == []


def running_raw(running: Running, tenant: Tenant, path: str) -> bytes:
    import urllib.request

    req = urllib.request.Request(
        running.api_url + path, headers={"Authorization": f"Bearer {tenant.key}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("application/zip")
        return bytes(resp.read())


def test_an_erasure_interrupted_by_sigkill_completes_when_the_api_is_back(
    sealed: Running,
) -> None:
    running = sealed
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    customer = new_customer()
    said = f"call me back {uuid.uuid4().hex[:10]}"
    name = f"Corrado Esposito {uuid.uuid4().hex[:6]}"
    payload = text_message(
        said, customer=customer, phone_number_id=number, name=name,
        waba_id=tenant.numbers[number],
    )  # fmt: skip
    assert running.post(payload)[0] == 200
    wait_for(
        lambda: len(tenant.call("GET", f"/v1/contacts?q={customer}").json["data"]) == 1,
        timeout=TIMEOUT,
    )
    contact_id = tenant.call("GET", f"/v1/contacts?q={customer}").json["data"][0]["id"]
    wait_for(lambda: len(running.graph.texts_to(customer)) == 1, timeout=TIMEOUT)
    asked = tenant.call("POST", f"/v1/contacts/{contact_id}/erase")
    assert asked.status == 202
    erasure_id = asked.json["erasure_id"]
    # Killed in the middle (phase 1 done, or under way: its transaction rolls back).
    wait_for(
        lambda: (
            running.sql("SELECT phase FROM erasures WHERE erasure_id = $1", erasure_id)[0]["phase"]
            >= 1
        ),
        timeout=TIMEOUT,
        interval=0.01,
    )
    running.stack.kill("api")
    assert (
        running.sql("SELECT status FROM erasures WHERE erasure_id = $1", erasure_id)[0]["status"]
        == "pending"
    )
    running.restart("api")
    wait_for(
        lambda: tenant.call("GET", f"/v1/erasures/{erasure_id}").json["status"] == "done",
        timeout=TIMEOUT,
        message="the erasure done after the restart",
    )
    assert leaks(running, [customer, name, said]) == []
    assert tenant.call("GET", f"/v1/contacts/{contact_id}").status == 404


def test_after_an_erasure_the_business_may_write_to_the_person_as_a_new_contact(
    sealed: Running,
) -> None:
    """A template to an erased customer's number, and their import as a contact, make a new
    contact (never the erased one's id, never a 500)."""
    running = sealed
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    customer = new_customer()
    payload = text_message(
        "hello", customer=customer, phone_number_id=number, waba_id=tenant.numbers[number]
    )
    assert running.post(payload)[0] == 200
    wait_for(
        lambda: len(tenant.call("GET", f"/v1/contacts?q={customer}").json["data"]) == 1,
        timeout=TIMEOUT,
    )
    contact_id = tenant.call("GET", f"/v1/contacts?q={customer}").json["data"][0]["id"]
    erasure_id = tenant.call("POST", f"/v1/contacts/{contact_id}/erase").json["erasure_id"]
    wait_for(
        lambda: tenant.call("GET", f"/v1/erasures/{erasure_id}").json["status"] == "done",
        timeout=TIMEOUT,
    )
    imported = tenant.call("POST", "/v1/contacts", {"wa_id": customer, "name": "Again"})
    assert imported.status == 201, imported
    assert imported.json["id"] != contact_id and imported.json["wa_id"] == customer
    sent = tenant.call(
        "POST",
        "/v1/messages",
        {
            "to": customer,
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}},
        },
    )
    assert sent.status == 202, sent
    assert sent.json["conversation_id"] == tenant.conversation_id(number, customer, epoch=1)
    wait_for(
        lambda: any(m["body"].get("type") == "template" for m in running.graph.sent_to(customer)),
        timeout=TIMEOUT,
        message="the template at Meta, to the number (never to the key with its epoch)",
    )
