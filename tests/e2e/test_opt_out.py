"""The marketing opt-out with the whole stack: Meta's `user_preferences` webhook (stop,
resume; a customer the business never saw becomes a contact), the customer's own words
(STOP and START on a number without a bot, a number's own keyword through its bot
definition) with their confirmation and no other answer, and a contact who opts out while
a MARKETING campaign runs skipped (`opted_out`), while a UTILITY template still reaches
them."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_campaigns import _tenant, campaign, counts, recipients, wait_status
from tests.support.fakes import wait_for

YAML = {"Content-Type": "application/yaml"}
UNSUBSCRIBED = "You're unsubscribed"


def preference(waba: str, number: str, wa_id: str, value: str) -> dict[str, Any]:
    """Meta's user_preferences delivery (the shape of pywa's fixture)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"field": "user_preferences", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": number},
            "contacts": [{"profile": {"name": "Someone"}, "wa_id": wa_id}],
            "user_preferences": [{
                "wa_id": wa_id, "detail": f"User requested to {value} marketing messages",
                "category": "marketing_messages", "value": value,
                "timestamp": int(time.time() * 1000) % 10**10,
            }],
        }}]}],
    }  # fmt: skip


def contact_of(tenant: Tenant, wa_id: str, within: float = 20.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def there() -> bool:
        data = tenant.call("GET", f"/v1/contacts?q={wa_id}").json["data"]
        if data:
            found.update(data[0])
        return bool(data)

    wait_for(there, timeout=within, message=f"contact {wa_id}")
    return found


def opted_out_becomes(tenant: Tenant, wa_id: str, value: bool) -> None:
    wait_for(
        lambda: contact_of(tenant, wa_id)["marketing_opt_out"] is value,
        timeout=20,
        message=f"marketing_opt_out {value} for {wa_id}",
    )


def test_metas_user_preferences_stop_creates_the_contact_and_resume_clears_it(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number, waba = next(iter(tenant.numbers.items()))
    stranger = new_customer()
    assert running.post(preference(waba, number, stranger, "stop"))[0] == 200
    # Never seen before: the stop makes the contact, opted out.
    opted_out_becomes(tenant, stranger, True)
    assert running.post(preference(waba, number, stranger, "resume"))[0] == 200
    opted_out_becomes(tenant, stranger, False)
    # Another business never sees that contact.
    other = make_tenant(running, numbers=1)
    assert other.call("GET", f"/v1/contacts?q={stranger}").json["data"] == []


def test_stop_and_start_without_a_bot_confirm_and_the_llm_does_not_answer_them(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    tenant.webhook(number, customer, "STOP")
    opted_out_becomes(tenant, customer, True)
    # The fence: the next message is answered by the LLM; before it, only the confirmation.
    tenant.webhook(number, customer, "what are your hours?")
    wait_for(lambda: len(running.graph.texts_to(customer)) >= 2, message="the next answer")
    first, second = running.graph.texts_to(customer)
    assert first.startswith(UNSUBSCRIBED)
    assert not second.startswith(UNSUBSCRIBED)
    tenant.webhook(number, customer, "start")
    opted_out_becomes(tenant, customer, False)
    wait_for(lambda: len(running.graph.texts_to(customer)) >= 3, message="the confirmation")
    assert running.graph.texts_to(customer)[2].startswith("You're subscribed again")


def test_a_numbers_own_keyword_opts_out_with_its_own_confirmation(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    definition = (
        "version: 1\nlanguage: it\n"
        "rules:\n  - id: hi\n    match: {any: [ciao]}\n    reply: Ciao!\n"
        "opt_out:\n  stop: [ANNULLA, STOP]\n  start: [RIATTIVA]\n"
        "  stop_reply: {it: Disiscritto.}\n  start_reply: {it: Riattivato.}\n"
    )
    put = tenant.call("PUT", f"/v1/numbers/{number}/bot", raw=definition.encode(), headers=YAML)
    assert put.status == 200, put
    customer = new_customer()
    tenant.webhook(number, customer, "Annulla")
    opted_out_becomes(tenant, customer, True)
    tenant.webhook(number, customer, "ciao")  # the fence: a rule's answer after it
    wait_for(lambda: len(running.graph.texts_to(customer)) >= 2, message="the rule's answer")
    assert running.graph.texts_to(customer) == ["Disiscritto.", "Ciao!"]
    tenant.webhook(number, customer, "riattiva")
    opted_out_becomes(tenant, customer, False)


def test_a_contact_opting_out_mid_campaign_is_skipped_and_utility_still_goes(
    running: Running,
) -> None:
    tenant = _tenant(running, rate=5)  # 4 a second for campaigns: 40 take about 10 s
    number, waba = next(iter(tenant.numbers.items()))
    running.graph.add_template(
        waba, name="order_ready", category="UTILITY",
        components=[{"type": "BODY", "text": "Order {{1}} is ready."}],
    )  # fmt: skip
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    people = [{"to": new_customer(), "variables": {"1": f"p{i}"}} for i in range(40)]
    last, meta_stop = people[-1]["to"], people[-2]["to"]
    made = campaign(tenant, {"recipients": people})
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    # The last one writes STOP, the one before stops marketing at Meta, while it runs.
    tenant.webhook(number, last, "STOP")
    assert running.post(preference(waba, number, meta_stop, "stop"))[0] == 200
    opted_out_becomes(tenant, last, True)
    opted_out_becomes(tenant, meta_stop, True)
    assert counts(tenant, made["id"])["counts"]["queued"] > 2, "the campaign was still running"
    done = wait_status(tenant, made["id"], "completed", within=60)
    assert done["counts"]["sent"] == 38 and done["counts"]["skipped"] == 2
    skipped = {(r["to"], r.get("skip_reason")) for r in recipients(tenant, made["id"], "skipped")}
    assert skipped == {(last, "opted_out"), (meta_stop, "opted_out")}
    # Neither got the template; the customer who wrote STOP got its confirmation only.
    templates = [s for s in running.graph.sent_to(last) if s["body"].get("type") == "template"]
    assert templates == [] and running.graph.sent_to(meta_stop) == []
    assert [t[: len(UNSUBSCRIBED)] for t in running.graph.texts_to(last)] == [UNSUBSCRIBED]

    # A UTILITY template still reaches them.
    utility = tenant.call(
        "POST", "/v1/campaigns",
        {"name": f"u{uuid.uuid4().hex[:4]}", "template": {"name": "order_ready",
         "language": "en_US"}, "audience": {"recipients": [
             {"to": last, "variables": {"1": "A1"}}, {"to": meta_stop, "variables": {"1": "B2"}}]}},
    )  # fmt: skip
    assert utility.status == 201, utility
    assert tenant.call("POST", f"/v1/campaigns/{utility.json['id']}/start").status == 200
    done = wait_status(tenant, utility.json["id"], "completed")
    assert done["counts"]["sent"] == 2 and done["counts"]["skipped"] == 0
    for who in (last, meta_stop):
        [sent] = [s for s in running.graph.sent_to(who) if s["body"].get("type") == "template"]
        assert sent["body"]["template"]["name"] == "order_ready"
