"""`POST /v1/campaigns/audience` (an extension) with the whole stack: an audience counted
as the campaign's start counts it (the same total and skipped figures), another
business's contacts with the same tag never counted, explicit recipients with a duplicate,
a UTILITY template reaching an opted-out contact, missing variables reported, bad input a
422 naming the field, and the route for admins only."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.api_support import Tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_campaigns import _tenant, campaign

UTILITY = {
    "name": "notice",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Your order {{1}} ships today."}],
}


def _count(tenant: Tenant, body: dict[str, Any], role: str = "admin") -> Any:
    return tenant.call("POST", "/v1/campaigns/audience", body, role=role)


def _tagged(tenant: Tenant, tag: str, n: int, **more: Any) -> list[str]:
    made = []
    for i in range(n):
        wa_id = new_customer()
        body = {"wa_id": wa_id, "name": f"N{i}", "tags": [tag], **more}
        answer = tenant.call("POST", "/v1/contacts", body)
        assert answer.status == 201, answer
        made.append(answer.json["id"])
    return made


def test_the_count_is_the_one_the_campaign_uses(running: Running) -> None:
    tenant, other = _tenant(running), _tenant(running)
    tag = f"t{uuid.uuid4().hex[:6]}"
    _tagged(tenant, tag, 3)
    [opted] = _tagged(tenant, tag, 1)
    assert tenant.call("PATCH", f"/v1/contacts/{opted}", {"marketing_opt_out": True}).status == 200
    _tagged(other, tag, 5)  # the same tag in another business: never counted

    promo = {"name": "promo", "language": "en_US"}
    counted = _count(tenant, {"audience": {"tags": [tag]}, "template": promo})
    assert counted.status == 200, counted
    # Without the variables the three would lack them: a start would be refused.
    assert counted.json == {
        "total": 4, "reachable": 3, "opted_out": 1, "duplicate": 0, "no_identity": 0,
        "missing_variables": 3, "csv_rejected": 0,
    }  # fmt: skip
    # Variables complete: nobody lacks one; without a template: counted as for marketing.
    full = {"1": "{{contact.name}}", "2": "5%"}
    counted = _count(tenant, {"audience": {"tags": [tag]}, "template": promo, "variables": full})
    assert counted.json["missing_variables"] == 0 and counted.json["reachable"] == 3
    plain = _count(tenant, {"audience": {"tags": [tag]}})
    assert plain.status == 200 and (plain.json["total"], plain.json["reachable"]) == (4, 3)

    # The campaign counts the same.
    made = campaign(tenant, {"tags": [tag]}, variables=full)
    started = tenant.call("POST", f"/v1/campaigns/{made['id']}/start")
    assert started.status == 200, started
    c = started.json["counts"]
    assert (c["total"], c["total"] - c["skipped"]) == (4, 3)

    # The other business sees its own five only.
    theirs = _count(other, {"audience": {"tags": [tag]}})
    assert (theirs.json["total"], theirs.json["reachable"]) == (5, 5)

    # Explicit recipients: a duplicate skipped; a UTILITY template reaches the opted out.
    waba = next(iter(tenant.numbers.values()))
    running.graph.add_template(waba, **UTILITY)
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    opted_wa = tenant.call("GET", f"/v1/contacts/{opted}").json["wa_id"]
    a = new_customer()
    listed = {"recipients": [{"to": a}, {"to": a}, {"to": opted_wa}]}
    counted = _count(tenant, {"audience": listed, "template": promo, "variables": full})
    assert counted.status == 200, counted
    assert (counted.json["total"], counted.json["duplicate"], counted.json["opted_out"]) == (
        3,
        1,
        1,
    )
    notice = {"name": "notice", "language": "en_US"}
    counted = _count(tenant, {"audience": listed, "template": notice, "variables": {"1": "A1"}})
    assert (counted.json["reachable"], counted.json["opted_out"]) == (2, 0)
    # A CSV: the rows refused are said, the rest counted.
    csv = f"to,1\n{a},A1\ncall me,A2\n"
    counted = _count(tenant, {"audience": {"csv": csv}, "template": notice})
    assert counted.status == 200, counted
    assert (counted.json["total"], counted.json["csv_rejected"]) == (1, 1)


def test_bad_input_is_a_422_with_the_field_and_writers_only_admins(running: Running) -> None:
    tenant = _tenant(running)

    def field(body: Any) -> str:
        answer = _count(tenant, body)
        assert answer.status == 422, answer
        return str(answer.json["error"]["fields"][0]["path"])

    assert field({}) == "audience"
    assert field({"audience": {}}) == "audience"
    assert field({"audience": {"tags": []}}) == "audience.tags"
    assert field({"audience": {"tags": ["a"], "recipients": [{"to": "1"}]}}) == "audience"
    assert field({"audience": {"recipients": [{"to": "not a number!"}]}}) == (
        "audience.recipients[0].to"
    )
    assert field(
        {"audience": {"tags": ["a"]}, "template": {"name": "nope", "language": "en_US"}}
    ) == ("template.name")
    assert (
        field({"audience": {"tags": ["a"]}, "template": {"name": "promo", "language": "fr"}})
        == "template.language.code"
    )
    assert field({"audience": {"tags": ["a"]}, "surprise": 1}) == "surprise"
    assert field({"audience": {"csv": "name\nx\n"}}) == "audience.csv"
    unknown = _count(tenant, {"audience": {"tags": ["a"]}, "phone_number_id": "999"})
    assert unknown.status == 404, unknown
    # Admins only, as the campaign writes.
    key = running.api(
        "POST", f"/v1/businesses/{tenant.id}/api-keys", {"name": "g", "role": "agent"}
    )
    tenant.keys["agent"] = key.json["key"]
    assert _count(tenant, {"audience": {"tags": ["a"]}}, role="agent").status == 403
    # Reading campaigns is open to every role (the console's progress view).
    assert tenant.call("GET", "/v1/campaigns", role="agent").status == 200
