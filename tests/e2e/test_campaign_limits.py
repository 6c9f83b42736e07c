"""Meta's per-recipient refusals in campaigns, with the whole stack: 131049 (per-user
marketing limit) is final for that campaign and keeps the customer out of the business's
next MARKETING campaign within 24 h (skipped, `marketing_limit`), while UTILITY still goes;
131056 (pair rate limit) makes that recipient wait and be sent later, while the others go
on."""

from __future__ import annotations

from tests.e2e.api_support import new_customer
from tests.e2e.harness import Running
from tests.e2e.test_campaigns import _tenant, campaign, recipients, wait_status
from tests.support.fakes import meta_error, sends_to


def test_131049_keeps_the_customer_out_of_the_next_marketing_campaign(running: Running) -> None:
    tenant = _tenant(running)
    waba = next(iter(tenant.numbers.values()))
    running.graph.add_template(
        waba, name="order_ready", category="UTILITY",
        components=[{"type": "BODY", "text": "Order {{1}} is ready."}],
    )  # fmt: skip
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    limited, other, third = (new_customer() for _ in range(3))
    running.graph.inject(meta_error(131049, match=sends_to(limited)))
    first = campaign(tenant, {"recipients": [{"to": limited, "variables": {"1": "L"}},
                                             {"to": other, "variables": {"1": "O"}}]})  # fmt: skip
    assert tenant.call("POST", f"/v1/campaigns/{first['id']}/start").status == 200
    done = wait_status(tenant, first["id"], "completed")
    assert (done["counts"]["sent"], done["counts"]["failed"]) == (1, 1)

    # The next MARKETING campaign skips them; the others in it are sent.
    second = campaign(tenant, {"recipients": [{"to": limited, "variables": {"1": "L"}},
                                              {"to": third, "variables": {"1": "T"}}]})  # fmt: skip
    assert tenant.call("POST", f"/v1/campaigns/{second['id']}/start").status == 200
    done = wait_status(tenant, second["id"], "completed")
    assert (done["counts"]["sent"], done["counts"]["skipped"]) == (1, 1)
    listed = {
        (r["to"], r["status"], r.get("skip_reason")) for r in recipients(tenant, second["id"])
    }
    assert listed == {(limited, "skipped", "marketing_limit"), (third, "sent", None)}
    assert running.graph.sent_to(limited) == []  # the refused one was never accepted
    assert len(running.graph.sent_to(third)) == 1

    # A UTILITY template still reaches them.
    utility = tenant.call("POST", "/v1/campaigns", {
        "name": "u", "template": {"name": "order_ready", "language": "en_US"},
        "audience": {"recipients": [{"to": limited, "variables": {"1": "A1"}}]},
    })  # fmt: skip
    assert utility.status == 201, utility
    assert tenant.call("POST", f"/v1/campaigns/{utility.json['id']}/start").status == 200
    assert wait_status(tenant, utility.json["id"], "completed")["counts"]["sent"] == 1
    [sent] = running.graph.sent_to(limited)
    assert sent["body"]["template"]["name"] == "order_ready"


def test_131056_makes_that_recipient_wait_while_the_others_go_on(running: Running) -> None:
    tenant = _tenant(running, rate=5)  # 4 a second: 16 take about 4 s
    people = [{"to": new_customer(), "variables": {"1": f"p{i}"}} for i in range(16)]
    paired = people[0]["to"]
    running.graph.inject(
        meta_error(131056, match=sends_to(paired)), meta_error(131056, match=sends_to(paired))
    )
    made = campaign(tenant, {"recipients": people})
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    done = wait_status(tenant, made["id"], "completed", within=90)
    assert (done["counts"]["sent"], done["counts"]["failed"]) == (16, 0)
    assert running.graph.pending_faults() == 0  # both refusals were answered
    [late] = running.graph.sent_to(paired)  # sent once, in the end
    others = [running.graph.sent_to(p["to"]) for p in people[1:]]
    assert all(len(o) == 1 for o in others)
    # First in the queue, sent last: the others did not wait behind it.
    assert all(o[0]["received_at"] < late["received_at"] for o in others)
