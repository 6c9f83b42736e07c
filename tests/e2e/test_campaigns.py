"""Campaigns with the whole stack: a draft checked before anything is sent, the audience
evaluated once at start (duplicates and opted-out contacts skipped with their reason),
each recipient sent once, Meta's refusals final for a recipient, counts following the
statuses (delivered, read, replied), `completed` at the end; a tag audience scheduled a few
seconds ahead and not sent before its time; the messaging limit Meta reports pausing a
campaign;
pause, resume and cancel."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.payloads import status_payload
from tests.e2e.api_support import Tenant, make_tenant, meta_id, new_customer
from tests.e2e.harness import Running
from tests.support.fakes import meta_error, sends_to, wait_for

PROMO = {
    "name": "promo",
    "category": "MARKETING",
    "components": [{"type": "BODY", "text": "Hello {{1}}, {{2}} off today."}],
}


def _tenant(running: Running, rate: float | None = None) -> Tenant:
    body: dict[str, Any] = {"name": f"campaigns {uuid.uuid4().hex[:6]}"}
    made = running.api("POST", "/v1/businesses", body)
    assert made.status == 201, made
    tenant = Tenant(running, made.json["id"])
    number, waba = meta_id(), meta_id()
    registered: dict[str, Any] = {
        "phone_number_id": number,
        "waba_id": waba,
        "display_phone_number": "+1 555 0100",
        "access_token": f"token-{number}",
    }
    if rate is not None:
        registered["send_rate_per_second"] = rate
    assert running.api("POST", f"/v1/businesses/{tenant.id}/numbers", registered).status == 201
    tenant.numbers[number] = waba
    running.graph.tokens[number] = f"token-{number}"
    running.graph.wabas[number] = waba
    key = running.api(
        "POST", f"/v1/businesses/{tenant.id}/api-keys", {"name": "a", "role": "admin"}
    )
    tenant.keys["admin"] = key.json["key"]
    running.graph.add_template(waba, **PROMO)
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    return tenant


def campaign(tenant: Tenant, audience: dict[str, Any], **more: Any) -> dict[str, Any]:
    body = {
        "name": "spring",
        "template": {"name": "promo", "language": "en_US"},
        "variables": {"2": "10%"},
        "audience": audience,
        **more,
    }
    made = tenant.call("POST", "/v1/campaigns", body)
    assert made.status == 201, made
    assert made.json["status"] == "draft"
    return made.json


def counts(tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    answer = tenant.call("GET", f"/v1/campaigns/{campaign_id}")
    assert answer.status == 200, answer
    return answer.json


def wait_status(tenant: Tenant, campaign_id: str, status: str, within: float = 60) -> dict:
    seen: dict[str, Any] = {}

    def there() -> bool:
        seen.update(counts(tenant, campaign_id))
        return seen["status"] == status

    wait_for(there, timeout=within, message=f"campaign {status}: {seen}")
    return seen


def recipients(tenant: Tenant, campaign_id: str, status: str | None = None) -> list[dict]:
    out, cursor = [], None
    while True:
        path = f"/v1/campaigns/{campaign_id}/recipients?limit=200"
        path += (f"&status={status}" if status else "") + (f"&cursor={cursor}" if cursor else "")
        page = tenant.call("GET", path).json
        out += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_a_campaign_from_draft_to_completed(running: Running) -> None:
    tenant = _tenant(running)
    number = next(iter(tenant.numbers))
    ann, bo, cy, opted, dee = (new_customer() for _ in range(5))
    dee_id = tenant.call("POST", "/v1/contacts", {"wa_id": dee, "name": "Dee"}).json["id"]
    contact = tenant.call("POST", "/v1/contacts", {"wa_id": opted, "name": "Opt"}).json["id"]
    assert (
        tenant.call("PATCH", f"/v1/contacts/{contact}", {"marketing_opt_out": True}).status == 200
    )
    # Refused before anything is recorded: an unknown template, a missing variable.
    unknown = tenant.call(
        "POST", "/v1/campaigns",
        {"name": "x", "template": {"name": "nope", "language": {"code": "en_US"}},
         "audience": {"recipients": [{"to": ann}]}},
    )  # fmt: skip
    assert unknown.status == 422 and unknown.json["error"]["fields"][0]["path"] == "template.name"
    missing = tenant.call(
        "POST", "/v1/campaigns",
        {"name": "x", "template": {"name": "promo", "language": "en_US"},
         "audience": {"recipients": [{"to": ann, "variables": {"2": "5%"}}]}},
    )  # fmt: skip
    assert missing.status == 422
    assert missing.json["error"]["fields"][0]["path"] == "audience.recipients[0].variables"
    assert "missing 1" in missing.json["error"]["fields"][0]["message"]

    made = campaign(
        tenant,
        {
            "recipients": [
                {"to": ann, "variables": {"1": "Ann"}},
                {"to": bo, "variables": {"1": "Bo"}},
                {"to": ann, "variables": {"1": "Ann again"}},
                {"to": opted, "variables": {"1": "Opt"}},
                {"to": cy, "variables": {"1": "Cy"}},
                {"to": dee, "variables": {"1": "Dee"}},
            ]
        },
    )
    # Meta refuses Bo for its per-user marketing limit: final for Bo in this campaign.
    running.graph.inject(meta_error(131049, match=sends_to(bo)))
    # Dee stopped marketing messages at Meta: failed, and opted out from now on.
    running.graph.inject(meta_error(131050, match=sends_to(dee)))
    started = tenant.call("POST", f"/v1/campaigns/{made['id']}/start")
    assert started.status == 200, started
    assert started.json["status"] in ("running", "completed")
    assert started.json["counts"]["total"] == 6 and started.json["counts"]["skipped"] == 2
    again = tenant.call("POST", f"/v1/campaigns/{made['id']}/start")
    assert again.status == 409, again
    done = wait_status(tenant, made["id"], "completed")
    assert done["counts"] | {} == {
        "total": 6, "queued": 0, "sent": 2, "delivered": 0, "read": 0, "replied": 0,
        "failed": 2, "skipped": 2,
    }  # fmt: skip
    # Each sent once, with its own variables; nothing to the duplicate or the opted out.
    assert len(running.graph.sent_to(ann)) == 1 and len(running.graph.sent_to(cy)) == 1
    assert running.graph.sent_to(opted) == []
    [to_ann] = running.graph.sent_to(ann)
    parameters = to_ann["body"]["template"]["components"][0]["parameters"]
    assert parameters == [{"type": "text", "text": "Ann"}, {"type": "text", "text": "10%"}]

    def reads_of_dee() -> list[str]:
        answer = tenant.call("GET", f"/v1/contacts/{dee_id}/accesses")
        assert answer.status == 200, answer
        return [a["what"] for a in answer.json["data"]]

    assert "list" not in reads_of_dee()
    listed = {(r["to"], r["status"], r.get("skip_reason")) for r in recipients(tenant, made["id"])}
    # The recipients' list showed Dee's number: a `list` read of Dee's contact.
    assert "list" in reads_of_dee()
    assert listed == {
        (ann, "sent", None), (bo, "failed", None), (ann, "skipped", "duplicate"),
        (opted, "skipped", "opted_out"), (cy, "sent", None), (dee, "failed", None),
    }  # fmt: skip
    failed = {r["to"]: r["error"]["code"] for r in recipients(tenant, made["id"], "failed")}
    assert failed == {bo: 131049, dee: 131050}
    wait_for(
        lambda: tenant.call("GET", f"/v1/contacts/{dee_id}").json["marketing_opt_out"],
        message="131050 opted Dee out",
    )

    # Statuses move the counts; Ann answers: replied.
    wamid = to_ann["wamid"]
    for status in ("delivered", "read"):
        code, _ = running.post(status_payload(wamid, status, ann, phone_number_id=number))
        assert code == 200
    tenant.webhook(number, ann, "thanks!")

    def moved() -> bool:
        c = counts(tenant, made["id"])["counts"]
        return c["read"] == 1 and c["delivered"] == 1 and c["replied"] == 1 and c["sent"] == 2

    wait_for(moved, message="delivered, read and replied counted")
    # The campaign message is in Cy's history (a customer the api never wrote to before),
    # with the template's text as Cy read it, said by the business.
    history = tenant.call("GET", f"/v1/conversations/{tenant.conversation_id(number, cy)}/messages")
    assert history.status == 200, history
    [said] = history.json["data"]
    assert (said["direction"], said["author"], said["type"]) == ("outbound", "business", "template")
    assert said["text"] == "Hello Cy, 10% off today."  # what Cy read, and what the bot sees


def test_a_tag_audience_scheduled_ahead_is_not_sent_before_its_time(running: Running) -> None:
    tenant = _tenant(running)
    tag = f"t{uuid.uuid4().hex[:6]}"
    customers = [new_customer() for _ in range(3)]
    for i, customer in enumerate(customers):
        body = {"wa_id": customer, "name": f"N{i}", "tags": [tag]}
        assert tenant.call("POST", "/v1/contacts", body).status == 201
    due = datetime.now(UTC) + timedelta(seconds=4)
    due_monotonic = time.monotonic() + 4
    made = campaign(
        tenant,
        {"tags": [tag]},
        variables={"1": "{{contact.name}}", "2": "5%"},
        schedule_at=due.isoformat().replace("+00:00", "Z"),
    )
    started = tenant.call("POST", f"/v1/campaigns/{made['id']}/start")
    assert started.status == 200 and started.json["status"] == "scheduled", started
    assert started.json["counts"]["total"] == 3 and started.json["counts"]["queued"] == 3
    # Restart the campaigns service meanwhile: the due time is in the database.
    running.stack.kill("campaigns")
    running.restart("campaigns")
    done = wait_status(tenant, made["id"], "completed")
    assert done["counts"]["sent"] == 3
    for i, customer in enumerate(customers):
        [sent] = running.graph.sent_to(customer)
        # The fence: the send itself, never before the time it was scheduled for.
        assert sent["received_at"] >= due_monotonic - 0.5
        first = sent["body"]["template"]["components"][0]["parameters"][0]
        assert first == {"type": "text", "text": f"N{i}"}


def capability(waba: str, limit: int) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba,
                "time": int(time.time()),
                "changes": [
                    {
                        "field": "business_capability_update",
                        "value": {
                            "max_daily_conversation_per_phone": limit,
                            "max_phone_numbers_per_business": 2,
                            "max_daily_conversations_per_business": limit,
                        },
                    }
                ],
            }
        ],
    }


def test_the_messaging_limit_pauses_the_campaign(running: Running) -> None:
    # The business was set up unlimited; Meta says its tier is 250 (and then says so again).
    tenant = _tenant(running)
    waba = next(iter(tenant.numbers.values()))
    for limit in (-1, 250):
        assert running.post(capability(waba, limit))[0] == 200
    wait_for(
        lambda: (
            running.sql(
                "SELECT messaging_limit FROM campaign_tiers WHERE business_id = $1", tenant.id
            )
            == [(250,)]
        ),
        message="the tier learned from Meta",
    )
    people = [{"to": new_customer(), "variables": {"1": "x"}} for _ in range(253)]
    made = campaign(tenant, {"recipients": people})
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    paused = wait_status(tenant, made["id"], "paused", within=90)
    assert paused["paused_reason"] == "messaging_limit"

    def settled() -> bool:
        return counts(tenant, made["id"])["counts"]["sent"] == 250

    wait_for(settled, timeout=60, message="250 sent")
    assert counts(tenant, made["id"])["counts"]["queued"] == 3
    sent = sum(len(running.graph.sent_to(p["to"])) for p in people)
    assert sent == 250


def test_pause_resume_and_cancel(running: Running) -> None:
    tenant = _tenant(running, rate=5)  # 4 a second for campaigns: slow enough to pause
    people = [{"to": new_customer(), "variables": {"1": "x"}} for _ in range(30)]
    made = campaign(tenant, {"recipients": people})
    cid = made["id"]
    assert tenant.call("POST", f"/v1/campaigns/{cid}/resume").status == 409  # a draft
    assert tenant.call("POST", f"/v1/campaigns/{cid}/start").status == 200
    wait_for(lambda: counts(tenant, cid)["counts"]["sent"] >= 2, message="the first sends")
    paused = tenant.call("POST", f"/v1/campaigns/{cid}/pause")
    assert paused.status == 200 and paused.json["status"] == "paused"
    assert paused.json.get("paused_reason") is None
    assert tenant.call("POST", f"/v1/campaigns/{cid}/pause").status == 409
    assert tenant.call("POST", f"/v1/campaigns/{cid}/resume").json["status"] == "running"
    done = wait_status(tenant, cid, "completed", within=60)
    assert done["counts"]["sent"] == 30
    assert all(len(running.graph.sent_to(p["to"])) == 1 for p in people)
    assert tenant.call("POST", f"/v1/campaigns/{cid}/cancel").status == 409

    # Scheduled ahead, paused and resumed before its time: scheduled again, as the campaigns
    # service keeps it; resumed after its time: it runs, and completes.
    def scheduled_in(seconds: float) -> str:
        at = datetime.now(UTC) + timedelta(seconds=seconds)
        made = campaign(tenant, {"recipients": people[:3]},
                        schedule_at=at.isoformat().replace("+00:00", "Z"))  # fmt: skip
        started = tenant.call("POST", f"/v1/campaigns/{made['id']}/start")
        assert started.json["status"] == "scheduled", started
        assert tenant.call("POST", f"/v1/campaigns/{made['id']}/pause").json["status"] == "paused"
        return str(made["id"])

    ahead = scheduled_in(3600)
    resumed = tenant.call("POST", f"/v1/campaigns/{ahead}/resume")
    assert resumed.status == 200 and resumed.json["status"] == "scheduled", resumed
    assert tenant.call("POST", f"/v1/campaigns/{ahead}/cancel").json["status"] == "cancelled"
    soon = scheduled_in(2)
    passed = time.monotonic() + 2.5
    wait_for(lambda: time.monotonic() > passed, timeout=10, message="its time passed")
    assert tenant.call("POST", f"/v1/campaigns/{soon}/resume").json["status"] == "running"
    assert wait_status(tenant, soon, "completed", within=60)["counts"]["sent"] == 3

    other = campaign(tenant, {"recipients": people[:5]})
    cancelled = tenant.call("POST", f"/v1/campaigns/{other['id']}/cancel")
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled"
    assert tenant.call("POST", f"/v1/campaigns/{other['id']}/start").status == 409
    # Another business never sees it.
    stranger = make_tenant(running, numbers=1)
    assert stranger.call("GET", f"/v1/campaigns/{cid}").status == 404
    assert stranger.call("POST", f"/v1/campaigns/{cid}/pause").status == 404


def test_variants_split_the_audience_by_weight(running: Running) -> None:
    tenant = _tenant(running)
    people = [{"to": new_customer(), "variables": {"1": "x"}} for _ in range(8)]
    made = campaign(
        tenant,
        {"recipients": people},
        variants=[
            {"template": {"name": "promo", "language": "en_US"}, "weight": 3},
            {"template": {"name": "hello_world", "language": {"code": "en_US"}}, "weight": 1},
        ],
    )
    assert [v["weight"] for v in made["variants"]] == [3, 1]
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    done = wait_status(tenant, made["id"], "completed")
    assert [v["counts"]["sent"] for v in done["variants"]] == [6, 2]
    names = [running.graph.sent_to(p["to"])[0]["body"]["template"]["name"] for p in people]
    assert names.count("promo") == 6 and names.count("hello_world") == 2


def test_a_template_meta_pauses_pauses_its_campaign(running: Running) -> None:
    tenant = _tenant(running, rate=5)  # 4 a second: still running when Meta pauses it
    waba = next(iter(tenant.numbers.values()))
    promo = tenant.call("GET", "/v1/templates?name=promo").json["data"][0]
    people = [{"to": new_customer(), "variables": {"1": "x"}} for _ in range(40)]
    made = campaign(tenant, {"recipients": people})
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    wait_for(lambda: counts(tenant, made["id"])["counts"]["sent"] >= 1, message="sending")
    change = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "time": int(time.time()), "changes": [{
            "field": "message_template_status_update",
            "value": {"event": "PAUSED", "message_template_id": int(promo["id"]),
                      "message_template_name": "promo", "message_template_language": "en_US",
                      "reason": "Low quality"},
        }]}],
    }  # fmt: skip
    assert running.post(change)[0] == 200
    paused = wait_status(tenant, made["id"], "paused")
    assert paused["paused_reason"] == "template_paused"
    assert paused["counts"]["queued"] > 0 and paused["counts"]["failed"] == 0
