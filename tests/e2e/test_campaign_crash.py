"""Each recipient of a campaign gets it exactly once across SIGKILLs of the real campaigns
and outbound processes mid-campaign. The one allowed duplicate is a kill inside the Graph
API call itself (outbound cannot know whether Meta got it): it must be visible, a
SendInterrupted in that recipient's outbox, never silent."""

from __future__ import annotations

from collections import Counter

from tests.e2e.api_support import new_customer
from tests.e2e.harness import Running
from tests.e2e.test_campaigns import _tenant, campaign, counts, recipients, wait_status
from tests.support.fakes import wait_for

RECIPIENTS = 400


def test_sigkill_of_campaigns_and_outbound_mid_campaign_sends_each_recipient_once(
    running: Running,
) -> None:
    tenant = _tenant(running, rate=40)  # 32 a second for the campaign: about 12 s
    people = [new_customer() for _ in range(RECIPIENTS)]
    made = campaign(tenant, {"recipients": [{"to": p, "variables": {"1": "x"}} for p in people]})
    wanted = set(people)

    def sent() -> int:
        with running.graph._lock:
            return sum(1 for s in running.graph.sent if s["to"] in wanted)

    running.graph.latency = 0.03  # sends in flight when outbound is killed
    try:
        assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
        wait_for(lambda: sent() >= 80, timeout=60, message="80 sent before killing campaigns")
        running.stack.kill("campaigns")
        at_kill = sent()
        running.restart("campaigns")
        wait_for(lambda: sent() >= at_kill + 100, timeout=60, message="sending again")
        running.stack.kill("outbound")
        running.restart("outbound")
        done = wait_status(tenant, made["id"], "completed", within=120)
    finally:
        running.graph.latency = 0.0
        for service in ("campaigns", "outbound"):
            if running.stack.pid(service) is None:
                running.restart(service)
    assert at_kill < RECIPIENTS  # the kill did land mid-campaign
    per_customer = Counter(s["to"] for s in running.graph.sent if s["to"] in wanted)
    assert set(per_customer) == wanted  # nobody lost
    twice = {c for c, n in per_customer.items() if n > 1}
    by_outbox = {f"outbox-{r['message_id']}": r["to"] for r in recipients(tenant, made["id"])}
    rows = running.sql(
        "SELECT stream_name FROM events WHERE type = 'SendInterrupted'"
        " AND stream_name = ANY($1::text[])",
        list(by_outbox),
    )
    interrupted = {by_outbox[r["stream_name"]] for r in rows}
    # Only a send killed inside its Graph API call may go twice, counted, and once more.
    assert twice <= interrupted
    assert all(n <= 2 for n in per_customer.values())
    assert done["counts"]["sent"] == RECIPIENTS and done["counts"]["queued"] == 0
    print(
        f"\ncampaign crash: {RECIPIENTS} recipients, campaigns killed at {at_kill} sent,"
        f" outbound killed once; duplicates {len(twice)}, interrupted sends {len(interrupted)}"
    )
    assert counts(tenant, made["id"])["counts"]["total"] == RECIPIENTS
