"""A customer's file through the public api: the `url` of a message's media serves the bytes
the media service kept, to a key of the conversation's business; another business's key
gets 404; a file the media service gave up is 409 with its reason."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, cast

from shared.payloads import messages_payload
from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.support.fakes import wait_for
from tests.support.media_fakes import FakeGraphMedia

TIMEOUT = 45.0


def send_image(
    tenant: Tenant,
    number: str,
    customer: str,
    media_id: str,
    caption: str = "receipt",
    mime_type: str = "image/jpeg",
) -> str:
    wamid = f"wamid.{uuid.uuid4().hex}"
    message = {
        "from": customer,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"id": media_id, "mime_type": mime_type, "caption": caption},
    }
    payload = messages_payload([message], customer, number, waba_id=tenant.numbers[number])
    status, body = tenant.running.post(payload)
    assert status == 200, body
    return wamid


def fetch(running: Running, path: str, key: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(running.api_url + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def media_of(tenant: Tenant, cid: str, wamid: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def listed() -> bool:
        answer = tenant.call("GET", f"/v1/conversations/{cid}/messages")
        for message in answer.json.get("data", []) if answer.status == 200 else []:
            if message["id"] == wamid and message.get("media"):
                found.update(message["media"])
        return bool(found)

    wait_for(listed, timeout=TIMEOUT, message=f"the media of {wamid} listed")
    return found


def test_a_customers_file_is_served_to_its_business_only(running: Running) -> None:
    a, b = make_tenant(running, numbers=1), make_tenant(running, numbers=1)
    graph = cast(FakeGraphMedia, running.graph)
    number = next(iter(a.numbers))
    customer = new_customer()
    content = os.urandom(3000)
    wamid = send_image(a, number, customer, graph.add_media(content, "image/jpeg").media_id)
    cid = a.conversation_id(number, customer)
    media = media_of(a, cid, wamid)
    assert media["kind"] == "image" and media["mime_type"] == "image/jpeg"
    url = media["url"]

    def served() -> bool:
        return fetch(running, url, a.keys["viewer"])[0] == 200

    wait_for(served, timeout=TIMEOUT, message="the file served once the media service kept it")
    status, body, headers = fetch(running, url, a.keys["viewer"])
    assert status == 200 and body == content
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Disposition"] == "attachment"
    assert headers["X-Content-Type-Options"] == "nosniff"

    # Another business's key: 404 for the file, as for the conversation.
    status, body, _ = fetch(running, url, b.key)
    assert status == 404 and b"not_found" in body
    assert fetch(running, url.replace(wamid, "wamid.nope"), a.key)[0] == 404
    assert fetch(running, url, "wak_not-a-key")[0] == 401

    # A file Meta no longer has: the media service gives it up, the api says why.
    lost = send_image(a, number, customer, "9" * 15)
    lost_url = media_of(a, cid, lost)["url"]

    # Until then it is 409 media_not_stored; given up, 409 media_unavailable with the reason.
    def gave_up() -> bool:
        status, body, _ = fetch(running, lost_url, a.key)
        return status == 409 and b"media_unavailable" in body

    wait_for(gave_up, timeout=TIMEOUT, message="the lost file answered media_unavailable")
    assert b"not_found" in fetch(running, lost_url, a.key)[1]  # Meta's reason, passed on
