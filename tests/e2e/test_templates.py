"""Templates with the whole stack: a sync over several pages of the fake Graph API, the
list's filters, Meta's status webhook moving a status, a creation (and Meta's hourly cap as
a 429), and `type: template` sends checked before anything is recorded (a missing or
unnamed parameter a 422 naming it, an unapproved template refused, a MARKETING one never
to a contact who opted out), the good one reaching Meta with its parameter names."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.support.fakes import wait_for

NAMED = {
    "name": "order_ready",
    "category": "UTILITY",
    "parameter_format": "NAMED",
    "components": [
        {"type": "BODY", "text": "Hi {{first_name}}, order {{order}} is ready."},
    ],
}
PROMO = {
    "name": "promo",
    "category": "MARKETING",
    "components": [{"type": "BODY", "text": "Hello {{1}}, 10% off today."}],
}


def _tenant(running: Running) -> tuple[Tenant, str, str]:
    tenant = make_tenant(running, numbers=1)
    number, waba = next(iter(tenant.numbers.items()))
    running.graph.wabas[number] = waba
    return tenant, number, waba


def send(tenant: Tenant, number: str, to: str, template: dict[str, Any]) -> Any:
    body = {"phone_number_id": number, "to": to, "type": "template", "template": template}
    return tenant.call("POST", "/v1/messages", body)


def status_change(waba: str, template_id: str, event: str) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba,
                "time": int(time.time()),
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": event,
                            "message_template_id": int(template_id),
                            "message_template_name": "order_ready",
                            "message_template_language": "en_US",
                            "reason": "NONE",
                        },
                    }
                ],
            }
        ],
    }


def test_sync_reads_every_page_and_the_list_filters(running: Running) -> None:
    tenant, _, waba = _tenant(running)
    for i in range(130):
        running.graph.add_template(
            waba,
            name=f"bulk_{i:03d}",
            status="APPROVED" if i % 2 else "REJECTED",
            components=[{"type": "BODY", "text": "x"}],
        )
    pages_before = len(running.graph.requests_matching(lambda r: "message_templates" in r.path))
    answer = tenant.call("POST", "/v1/templates/sync")
    assert answer.status == 200, answer
    assert answer.json == {"synced": 131}  # hello_world and the 130
    pages = len(running.graph.requests_matching(lambda r: "message_templates" in r.path))
    assert pages - pages_before == 2  # 100 a page
    seen, cursor = [], None
    while True:
        path = "/v1/templates?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = tenant.call("GET", path, role="viewer").json
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 131 and len({t["id"] for t in seen}) == 131
    approved = tenant.call("GET", "/v1/templates?status=APPROVED&limit=200").json["data"]
    assert len(approved) == 66 and {t["status"] for t in approved} == {"APPROVED"}
    one = tenant.call("GET", "/v1/templates?name=bulk_007").json["data"]
    assert [(t["name"], t["language"], t["category"]) for t in one] == [
        ("bulk_007", "en_US", "MARKETING")
    ]
    # A second sync records nothing new: Meta's list did not change.
    count = len(running.events_of_type("TemplateRecorded", waba_id=waba))
    assert tenant.call("POST", "/v1/templates/sync").json == {"synced": 131}
    assert len(running.events_of_type("TemplateRecorded", waba_id=waba)) == count
    bad = tenant.call("GET", "/v1/templates?status=NICE")
    assert bad.status == 422 and bad.json["error"]["fields"][0]["path"] == "status"


def test_template_sends_are_checked_before_anything_is_recorded(running: Running) -> None:
    tenant, number, waba = _tenant(running)
    named = running.graph.add_template(waba, **NAMED)
    running.graph.add_template(waba, **PROMO)
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    customer = new_customer()
    language = {"code": "en_US"}

    def body(*parameters: dict[str, str]) -> dict[str, Any]:
        return {
            "name": "order_ready",
            "language": language,
            "components": [{"type": "body", "parameters": list(parameters)}],
        }

    first = {"type": "text", "text": "Ann", "parameter_name": "first_name"}
    missing = send(tenant, number, customer, body(first))
    assert missing.status == 422, missing
    assert "{{order}} is missing" in missing.json["error"]["fields"][0]["message"]
    unnamed = send(tenant, number, customer, body({"type": "text", "text": "Ann"}))
    assert unnamed.status == 422
    assert unnamed.json["error"]["fields"][0]["path"].endswith("parameter_name")
    wrong_language = send(tenant, number, customer, {**body(first), "language": {"code": "it"}})
    assert wrong_language.status == 422
    assert wrong_language.json["error"]["fields"][0]["path"] == "template.language.code"
    unknown = send(tenant, number, customer, {"name": "nope", "language": language})
    assert unknown.status == 422 and unknown.json["error"]["fields"][0]["path"] == "template.name"
    order = {"type": "text", "text": "A-17", "parameter_name": "order"}
    good = send(tenant, number, customer, body(first, order))
    assert good.status == 202, good
    wait_for(lambda: len(running.graph.sent_to(customer)) == 1, message="the template sent")
    [sent] = running.graph.sent_to(customer)
    assert sent["body"]["template"]["components"][0]["parameters"] == [first, order]
    # Nothing refused was recorded: one request, the good one.
    assert len(running.events_of_type("MessageRequested", address=customer)) == 1

    # Marketing never goes to a contact who opted out; utility still does.
    opted = new_customer()
    contact = tenant.call("POST", "/v1/contacts", {"wa_id": opted}).json["id"]
    patched = tenant.call("PATCH", f"/v1/contacts/{contact}", {"marketing_opt_out": True})
    assert patched.status == 200, patched
    promo = {
        "name": "promo",
        "language": language,
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Bo"}]}],
    }
    refused = send(tenant, number, opted, promo)
    assert refused.status == 409 and refused.json["error"]["code"] == "opted_out"
    assert send(tenant, number, opted, body(first, order)).status == 202

    # Meta pauses the template: its webhook moves the status, and the send is refused.
    status, _ = running.post(status_change(waba, named["id"], "PAUSED"))
    assert status == 200

    def paused() -> bool:
        listed = tenant.call("GET", "/v1/templates?name=order_ready").json["data"]
        return [t["status"] for t in listed] == ["PAUSED"]

    wait_for(paused, message="the status webhook applied")
    later = send(tenant, number, new_customer(), body(first, order))
    assert later.status == 422 and "PAUSED" in later.json["error"]["message"]


def test_create_at_meta_and_the_hourly_cap(running: Running) -> None:
    tenant, _, waba = _tenant(running)
    name = f"welcome_{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "language": "en_US",
        "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Welcome {{1}}!"}],
    }
    made = tenant.call("POST", "/v1/templates", body)
    assert made.status == 201, made
    assert made.json["status"] == "PENDING" and made.json["name"] == name
    listed = tenant.call("GET", f"/v1/templates?name={name}").json["data"]
    assert [t["id"] for t in listed] == [made.json["id"]]
    gap = tenant.call(
        "POST",
        "/v1/templates",
        {**body, "name": "gappy", "components": [{"type": "BODY", "text": "{{1}} {{3}}"}]},
    )
    assert gap.status == 422 and gap.json["error"]["fields"][0]["path"] == "components[0]"
    # Meta's own count says the hour is used up.
    with running.graph._lock:
        running.graph.created[waba] = [time.monotonic()] * 100
    capped = tenant.call("POST", "/v1/templates", {**body, "name": name + "_2"})
    assert capped.status == 429 and capped.json["error"]["code"] == "quota_exceeded"
    assert int(capped.headers["Retry-After"]) > 0
    assert tenant.call("POST", "/v1/templates", body, role="agent").status == 403


def test_a_send_by_variables_is_filled_as_campaigns_fill_them(running: Running) -> None:
    tenant, number, waba = _tenant(running)
    running.graph.add_template(waba, **NAMED)
    running.graph.add_template(
        waba,
        name="ticket_update",
        category="UTILITY",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Ticket {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, ticket {{2}} is {{3}}."},
            {"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Open", "url": "https://help.example/t/{{1}}"},
                {"type": "COPY_CODE", "example": "X1"},
            ]},
        ],
    )  # fmt: skip
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    customer = new_customer()
    made = tenant.call(
        "POST", "/v1/contacts", {"wa_id": customer, "name": "Ada", "attributes": {"city": "Pisa"}}
    )
    assert made.status == 201, made
    language = {"code": "en_US"}
    variables = {"header.1": "T-3", "1": "{{contact.name}} of {{contact.city}}", "2": "T-3",
                 "3": "solved", "button.0": "T-3", "button.1": "CODE9"}  # fmt: skip
    good = send(
        tenant,
        number,
        customer,
        {"name": "ticket_update", "language": language, "variables": variables},
    )
    assert good.status == 202, good
    wait_for(lambda: len(running.graph.sent_to(customer)) == 1, message="the template sent")
    [sent] = running.graph.sent_to(customer)
    assert sent["body"]["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "T-3"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ada of Pisa"},
                                        {"type": "text", "text": "T-3"},
                                        {"type": "text", "text": "solved"}]},
        {"type": "button", "sub_type": "url", "index": "0",
         "parameters": [{"type": "text", "text": "T-3"}]},
        {"type": "button", "sub_type": "copy_code", "index": "1",
         "parameters": [{"type": "coupon_code", "coupon_code": "CODE9"}]},
    ]  # fmt: skip
    assert "variables" not in sent["body"]["template"]
    # Named: by name. Missing or empty: each named in the 422; nothing recorded.
    named = send(
        tenant,
        number,
        customer,
        {
            "name": "order_ready",
            "language": language,
            "variables": {"first_name": "Ann", "order": "A-1"},
        },
    )
    assert named.status == 202, named
    before = len(running.events_of_type("MessageRequested", to=customer))
    lacking = send(
        tenant,
        number,
        customer,
        {
            "name": "ticket_update",
            "language": language,
            "variables": {**variables, "3": "", "button.1": "  "},
        },
    )
    assert lacking.status == 422, lacking
    paths = {f["path"] for f in lacking.json["error"]["fields"]}
    assert paths == {"template.variables.3", "template.variables.button.1"}
    both = send(
        tenant,
        number,
        customer,
        {
            "name": "order_ready",
            "language": language,
            "variables": {"first_name": "A", "order": "B"},
            "components": [{"type": "body", "parameters": []}],
        },
    )
    assert both.status == 422 and both.json["error"]["fields"][0]["path"] == "template.variables"
    assert len(running.events_of_type("MessageRequested", to=customer)) == before
