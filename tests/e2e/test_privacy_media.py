"""The media store's dedup is per customer: two customers send the same bytes, the first is
erased, and the second's file is still there and served (an erasure never deletes another
customer's file)."""

from __future__ import annotations

import os
import time
import uuid
from typing import cast

from shared.payloads import messages_payload
from tests.e2e.api_support import Tenant, make_tenant
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for
from tests.support.media_fakes import FakeGraphMedia


def send_photo(running: Running, tenant: Tenant, number: str, customer: str, content: bytes) -> str:
    image = cast(FakeGraphMedia, running.graph).add_media(content, "image/jpeg")
    wamid = f"wamid.{uuid.uuid4().hex}"
    message = {
        "from": customer,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"id": image.media_id, "mime_type": "image/jpeg"},
    }
    payload = messages_payload([message], customer, number, "", tenant.numbers[number])
    assert running.post(payload)[0] == 200
    return wamid


def test_erasing_a_customer_keeps_another_customers_copy_of_the_same_file(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    tenant.use_graph_token(number)
    content = os.urandom(2048)
    erased, kept = new_customer(), new_customer()
    wamids = {c: send_photo(running, tenant, number, c, content) for c in (erased, kept)}
    wait_for(
        lambda: all(running.events_of_type("MediaStored", wamid=w) for w in wamids.values()),
        timeout=30,
        message="both files stored",
    )
    keys = {
        c: running.events_of_type("MediaStored", wamid=w)[0]["store_key"] for c, w in wamids.items()
    }
    assert keys[erased] != keys[kept]
    assert all((running.media_dir / k).read_bytes() == content for k in keys.values())

    def conversation(customer: str) -> dict[str, object] | None:
        found = [
            c for c in tenant.call("GET", "/v1/conversations").json["data"]
            if c["contact"].get("wa_id") == customer
        ]  # fmt: skip
        return found[0] if found else None

    wait_for(lambda: conversation(erased) and conversation(kept), timeout=30, message="both")
    kept_conversation = conversation(kept)
    assert kept_conversation is not None
    media = f"/v1/conversations/{kept_conversation['id']}/messages/{wamids[kept]}/media"
    wait_for(lambda: tenant.call("GET", media).status == 200, timeout=30, message="the file")
    gone = conversation(erased)
    assert gone is not None
    contact = gone["contact"]["id"]  # type: ignore[index]
    accepted = tenant.call("POST", f"/v1/contacts/{contact}/erase")
    assert accepted.status == 202, accepted
    erasure = f"/v1/erasures/{accepted.json['erasure_id']}"
    wait_for(
        lambda: tenant.call("GET", erasure).json["status"] == "done",
        timeout=60,
        message="the erasure to complete",
    )
    assert not (running.media_dir / keys[erased]).exists()  # theirs deleted
    assert (running.media_dir / keys[kept]).read_bytes() == content  # the other's kept
    req = tenant.call("GET", media)
    assert req.status == 200, req
