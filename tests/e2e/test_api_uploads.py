"""A person's file through the api (`POST /v1/media`): uploaded to Meta for the number
(the fake Graph API gets the very bytes, its type and the number's token), answered with
the media id the message then sends it by; Meta's types and sizes checked first (415, 413,
an empty body 422), a viewer refused, another business's number 404, Meta down 503."""

from __future__ import annotations

import os
from typing import cast

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import ApiAnswer, Running
from tests.support.fakes import Fault, wait_for
from tests.support.media_fakes import FakeGraphMedia, is_upload


def _tenant(running: Running) -> tuple[Tenant, str]:
    tenant = make_tenant(running, numbers=1)
    [number] = tenant.numbers
    tenant.use_graph_token(number)
    return tenant, number


def upload(tenant: Tenant, number: str, data: bytes, mime: str, role: str = "agent") -> ApiAnswer:
    return tenant.running.api(
        "POST", f"/v1/media?phone_number_id={number}", raw=data,
        headers={"Content-Type": mime}, token=tenant.keys[role],
    )  # fmt: skip


def test_a_file_is_uploaded_to_meta_and_sent_by_its_id(running: Running) -> None:
    tenant, number = _tenant(running)
    graph = cast(FakeGraphMedia, running.graph)
    pdf = b"%PDF-1.4 " + os.urandom(300_000)  # over the api's JSON body limit
    made = upload(tenant, number, pdf, "application/pdf")
    assert made.status == 201, made
    answer = made.json
    assert (answer["kind"], answer["mime_type"], answer["size"]) == (
        "document", "application/pdf", len(pdf)
    )  # fmt: skip
    sent = graph.upload(answer["id"])
    assert (sent["phone_number_id"], sent["type"], sent["data"]) == (
        number, "application/pdf", pdf
    )  # fmt: skip
    # Sent by its id, to a customer whose window is open.
    customer = new_customer()
    tenant.webhook(number, customer, "send me the invoice")
    wait_for(lambda: "echo: send me the invoice" in running.graph.texts_to(customer))
    tenant.conversation(number, customer)  # its window open in the read model
    message = {"phone_number_id": number, "to": customer, "type": "document",
               "document": {"id": answer["id"], "filename": "invoice.pdf"}}  # fmt: skip
    assert tenant.call("POST", "/v1/messages", message, role="agent").status == 202
    wait_for(
        lambda: any(s["body"].get("type") == "document" for s in graph.sent_to(customer)),
        message="the document at Meta",
    )
    [doc] = [s["body"] for s in graph.sent_to(customer) if s["body"].get("type") == "document"]
    assert doc["document"] == {"id": answer["id"], "filename": "invoice.pdf"}


def test_what_meta_would_refuse_is_refused_first(running: Running) -> None:
    tenant, number = _tenant(running)
    other, other_number = _tenant(running)
    graph = cast(FakeGraphMedia, running.graph)
    before = len(graph.uploads)
    odd = upload(tenant, number, b"MZ\x90\x00", "application/x-msdownload")
    assert odd.status == 415 and odd.json["error"]["code"] == "unsupported_media_type", odd
    big = upload(tenant, number, os.urandom(5 * 1024 * 1024 + 1), "image/jpeg")
    assert big.status == 413 and big.json["error"]["code"] == "too_large", big
    empty = upload(tenant, number, b"", "image/png")
    assert empty.status == 422, empty
    assert upload(tenant, number, b"\x89PNG", "image/png", role="viewer").status == 403
    assert upload(tenant, other_number, b"\x89PNG", "image/png").status == 404
    assert len(graph.uploads) == before  # none of them reached Meta
    # Meta down: 503, to try again.
    graph.inject(Fault(status=500, match=is_upload))
    down = upload(other, other_number, b"\x89PNG" + os.urandom(64), "image/png")
    assert down.status == 503, down
    assert graph.pending_faults() == 0  # it was Meta's answer, not a check of ours
