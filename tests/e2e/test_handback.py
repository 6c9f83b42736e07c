"""The idle hand-back with the whole stack (HANDBACK_IDLE_SECONDS set): a conversation a
person took over and nobody wrote in goes back to the bot by itself, with a Released by
`idle`, and the bot answers the customer's next message (the fence)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running, own_stack
from tests.support.fakes import wait_for

IDLE = 3.0


@pytest.fixture(scope="module")
def idle_stack() -> Iterator[Running]:
    with own_stack(HANDBACK_IDLE_SECONDS=str(IDLE)) as running:
        yield running


def test_an_idle_conversation_goes_back_to_the_bot_with_an_event(idle_stack: Running) -> None:
    running = idle_stack
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "hello bot")
    wait_for(lambda: "echo: hello bot" in running.graph.texts_to(customer), message="bot reply")
    tenant.conversation(number, customer)  # in the read model
    taken = tenant.call("POST", f"/v1/conversations/{cid}/handoff", {}, role="agent")
    assert taken.status == 200 and taken.json["state"] == "waiting", taken

    # Nobody writes: within the idle time and the timer's cadence, back to the bot.
    wait_for(
        lambda: bool(running.events_of_type("Released", by="idle")),
        timeout=IDLE + 20,
        message="released by the idle timer",
    )
    [released] = running.events_of_type("Released", by="idle")
    assert released["reason"] == "idle" and released["request_id"].startswith("idle:")
    wait_for(
        lambda: tenant.call("GET", f"/v1/conversations/{cid}").json["state"] == "bot",
        message="the read model shows the bot",
    )
    # The timer's row goes (its subscription follows the streams, a moment behind the
    # conversation); then the bot answers again (the fence) and nothing fired twice.
    wait_for(
        lambda: (
            running.sql(
                "SELECT 1 FROM conversation_handback_timers WHERE conversation_id = $1", cid
            )
            == []
        ),
        message="the idle timer's row removed at the release",
    )
    running.fence(customer, phone_number_id=number)
    assert len(running.events_of_type("Released", by="idle")) == 1


def test_a_business_sets_its_own_idle_time_or_none(idle_stack: Running) -> None:
    running = idle_stack
    never, default = make_tenant(running, numbers=1), make_tenant(running, numbers=1)
    # The settings: any role reads them, an admin sets them, and bad values name the field.
    got = never.call("GET", "/v1/handoff/settings", role="viewer")
    assert got.status == 200 and got.json == {"idle_seconds": None,
                                              "effective_idle_seconds": int(IDLE)}  # fmt: skip
    assert (
        never.call("PUT", "/v1/handoff/settings", {"idle_seconds": 0}, role="agent").status == 403
    )
    for bad in (-1, "soon", 31 * 24 * 3600):
        refused = never.call("PUT", "/v1/handoff/settings", {"idle_seconds": bad})
        assert refused.status == 422 and "idle_seconds" in str(refused.json), (bad, refused)
    off = never.call("PUT", "/v1/handoff/settings", {"idle_seconds": 0})
    assert off.status == 200 and off.json == {"idle_seconds": 0, "effective_idle_seconds": None}

    def handed(tenant: Tenant) -> str:
        number = next(iter(tenant.numbers))
        customer = new_customer()
        tenant.webhook(number, customer, "hello bot")
        wait_for(lambda: "echo: hello bot" in running.graph.texts_to(customer))
        cid = tenant.conversation_id(number, customer)
        tenant.conversation(number, customer)
        taken = tenant.call("POST", f"/v1/conversations/{cid}/handoff", {}, role="agent")
        assert taken.status == 200, taken
        return cid

    kept = handed(never)  # first: idle at least as long as the other
    back = handed(default)
    wait_for(
        lambda: any(r["request_id"].startswith("idle:") for r in _released(running, back)),
        timeout=IDLE + 20,
        message="the default business's conversation released",
    )
    # The claim that released it would have claimed the other too, had it been due.
    [row] = running.sql(
        "SELECT fired_at FROM conversation_handback_timers WHERE conversation_id = $1", kept
    )
    assert row["fired_at"] is None
    assert never.call("GET", f"/v1/conversations/{kept}").json["state"] == "waiting"
    # The business's other writes still work after it (the directory's version kept).
    issued = never.call("POST", "/v1/api-keys", {"name": "after", "role": "viewer"})
    assert issued.status == 201, issued
    # Its own time, short: from the next poll on, it goes back too.
    assert never.call("PUT", "/v1/handoff/settings", {"idle_seconds": 1}).status == 200
    wait_for(
        lambda: bool(_released(running, kept)),
        timeout=20,
        message="released once the business set its own time",
    )


def _released(running: Running, conversation: str) -> list[dict[str, object]]:
    return [
        d for t, d in running.events(f"conversation-{conversation}") if t == "Released"
    ]  # fmt: skip
