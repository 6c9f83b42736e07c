"""`GET /v1/analytics` with the whole stack: known traffic (customers' messages, the bot's
replies, a handoff and an agent's reply, a close) gives exactly the expected counts and
plausible first-response times; another business's traffic is never counted; a number
filter; a campaign's funnel; bad input is a 422 naming the field."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_campaigns import _tenant, campaign, wait_status
from tests.support.fakes import wait_for

READ_MODELS = ("api.conversations", "api.analytics", "api.campaigns")


def read_models_caught_up(running: Running) -> None:
    """The fence for the read models: every event recorded so far is projected (their
    checkpoints have passed the log's last position as it is now)."""
    [last] = running.sql(
        "SELECT transaction_id::text::bigint AS t, global_position AS g FROM events"
        " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    )

    def there() -> bool:
        rows = running.sql(
            "SELECT transaction_id::text::bigint AS t, global_position AS g"
            " FROM subscription_checkpoints WHERE name = ANY($1::text[])",
            list(READ_MODELS),
        )
        return len(rows) == len(READ_MODELS) and all(
            (r["t"], r["g"]) >= (last["t"], last["g"]) for r in rows
        )

    wait_for(there, timeout=30, message="the read models past the log's end")


def period() -> str:
    """Yesterday to tomorrow (UTC): today's traffic, whenever the test runs."""
    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


def analytics(tenant: Tenant, query: str = "", role: str = "viewer") -> dict[str, Any]:
    answer = tenant.call("GET", f"/v1/analytics?{period()}{query}", role=role)
    assert answer.status == 200, answer
    return dict(answer.json)


def totals(found: dict[str, Any]) -> tuple[int, int]:
    days = found["messages_per_day"]
    return sum(d["inbound"] for d in days), sum(d["outbound"] for d in days)


def _echo(running: Running, customer: str, text: str) -> None:
    wait_for(lambda: f"echo: {text}" in running.graph.texts_to(customer), message=text)


def test_known_traffic_gives_exactly_its_figures_and_no_other_businesss(
    running: Running,
) -> None:
    began = time.monotonic()
    tenant, other = make_tenant(running, numbers=2), make_tenant(running, numbers=1)
    number, quiet = list(tenant.numbers)
    elsewhere = next(iter(other.numbers))
    ann, bo, stranger = new_customer(), new_customer(), new_customer()

    # Ann: two turns with the bot.
    for text in ("hello one", "hello two"):
        tenant.webhook(number, ann, text)
        _echo(running, ann, text)
    # Bo: one turn with the bot, then a person: handoff, Bo writes, the agent answers.
    tenant.webhook(number, bo, "hi there")
    _echo(running, bo, "hi there")
    bo_id = tenant.conversation(number, bo)["id"]
    handed = tenant.call("POST", f"/v1/conversations/{bo_id}/handoff", {}, role="agent")
    assert handed.status == 200 and handed.json["state"] == "waiting", handed
    wamid = tenant.webhook(number, bo, "a person please")
    wait_for(
        lambda: bool(running.events_of_type("CustomerWrote", wamid=wamid)),
        message="Bo's message recorded",
    )
    body = {"phone_number_id": number, "to": bo, "type": "text", "text": {"body": "Ada here"}}
    assert tenant.call("POST", "/v1/messages", body, role="agent").status == 202
    wait_for(lambda: "Ada here" in running.graph.texts_to(bo), message="the agent's reply")
    assert tenant.call("POST", f"/v1/conversations/{bo_id}/release", role="agent").status == 200
    # Another business's customer, on its own number.
    other.webhook(elsewhere, stranger, "not yours")
    _echo(running, stranger, "not yours")
    # The fences: every message of the three is handled (each adds one message and its reply).
    running.fences({ann: number, bo: number, stranger: elsewhere})
    closed = tenant.call(
        "POST", f"/v1/conversations/{tenant.conversation_id(number, ann)}/close", role="agent"
    )
    assert closed.status == 200
    read_models_caught_up(running)

    found = analytics(tenant)
    # In: Ann 2 + fence, Bo 2 + fence. Out: the bot's 3 to Ann, 2 to Bo, the agent's 1.
    assert totals(found) == (6, 6)
    assert len(found["messages_per_day"]) == 3
    assert found["period"]["days"] == 3 and found["period"]["timezone"] == "UTC"
    bot, agent = found["first_response"]["bot"], found["first_response"]["agent"]
    assert bot["count"] == 5 and agent["count"] == 1
    took_ms = (time.monotonic() - began) * 1000
    # Plausible: after the message, within the test's own time, p90 not under the median.
    assert 0 < bot["median_ms"] <= bot["p90_ms"] < took_ms
    assert 0 < agent["median_ms"] == agent["p90_ms"] < took_ms
    assert found["handoff_rate"] == {"conversations": 2, "handed_off": 1, "rate": 0.5}
    assert found["conversations_by_state"] == {"bot": 1, "waiting": 0, "agent": 0, "closed": 1}
    assert found["campaigns"] == []

    # The same figures for the number; none for its quiet one; a viewer and an admin alike.
    assert analytics(tenant, f"&phone_number_id={number}", role="admin") == {
        **found,
        "period": {**found["period"], "phone_number_id": number},
    }
    silent = analytics(tenant, f"&phone_number_id={quiet}")
    assert totals(silent) == (0, 0) and silent["first_response"]["bot"] == {
        "median_ms": None, "p90_ms": None, "count": 0,
    }  # fmt: skip
    assert silent["handoff_rate"]["rate"] is None
    # The other business sees its own only; its number is not a filter of ours.
    theirs = analytics(other)
    assert totals(theirs) == (2, 2) and theirs["first_response"]["bot"]["count"] == 2
    assert theirs["handoff_rate"] == {"conversations": 1, "handed_off": 0, "rate": 0.0}
    assert tenant.call("GET", f"/v1/analytics?phone_number_id={elsewhere}").status == 404
    # A period without the traffic has none of it (and every day, at 0).
    earlier = tenant.call("GET", "/v1/analytics?from=2020-01-01&to=2020-01-31").json
    assert len(earlier["messages_per_day"]) == 31 and totals(earlier) == (0, 0)


def test_bad_input_is_a_422_naming_the_field(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)

    def refused(query: str) -> tuple[str, str]:
        answer = tenant.call("GET", f"/v1/analytics?{query}")
        assert answer.status == 422, answer
        [field] = answer.json["error"]["fields"]
        return field["path"], field["message"]

    assert refused("from=2026-02-30")[0] == "from"
    assert refused("from=2026-1-5")[0] == "from"
    assert refused("to=yesterday")[0] == "to"
    assert refused("from=0000-01-01")[0] == "from"
    assert refused("to=9999-12-31")[0] == "to"
    path, message = refused("from=2026-03-02&to=2026-03-01")
    assert path == "from" and "after" in message
    path, message = refused("from=2025-01-01&to=2026-01-02")  # 367 days
    assert path == "to" and "366" in message
    assert refused("since=2026-01-01")[0] == "since"
    assert refused("from=2026-01-01&from=2026-01-02")[0] == "from"
    # The longest period is fine; so are no dates at all (the last 14 days).
    assert tenant.call("GET", "/v1/analytics?from=2025-01-01&to=2026-01-01").status == 200
    default = tenant.call("GET", "/v1/analytics", role="viewer").json
    assert default["period"]["days"] == 14
    assert default["period"]["to"] == datetime.now(UTC).date().isoformat() or (
        default["period"]["to"] == (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    )  # midnight between the request and this line
    assert tenant.running.api("GET", "/v1/analytics", token=None).status == 401


def test_a_campaigns_funnel_is_its_counts(running: Running) -> None:
    tenant = _tenant(running)
    ann, bo = new_customer(), new_customer()
    made = campaign(
        tenant,
        {
            "recipients": [
                {"to": ann, "variables": {"1": "Ann"}},
                {"to": bo, "variables": {"1": "Bo"}},
            ]
        },
    )
    draft = tenant.call("GET", f"/v1/analytics?{period()}").json
    assert draft["campaigns"] == []  # a draft has not run
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    done = wait_status(tenant, made["id"], "completed")
    read_models_caught_up(running)
    found = tenant.call("GET", f"/v1/analytics?{period()}").json
    [funnel] = found["campaigns"]
    assert (funnel["id"], funnel["name"], funnel["status"]) == (made["id"], "spring", "completed")
    assert funnel["counts"] == tenant.call("GET", f"/v1/campaigns/{made['id']}").json["counts"]
    assert funnel["counts"]["total"] == 2 and funnel["counts"]["sent"] == 2, done
    # Its messages are the business's outbound; nobody wrote, so no conversation counts.
    assert totals(found) == (0, 2)
    assert found["handoff_rate"]["conversations"] == 0
