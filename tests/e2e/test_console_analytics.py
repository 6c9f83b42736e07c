"""The console's analytics page in a real browser (Debian's chromium through playwright's
executable_path), against the whole stack: known traffic drawn as charts whose accessible
text (each SVG's summary and its table) has exactly the expected figures, for a viewer;
the number filter; a bad period refused with the field; the page in Italian; a campaign's
funnel, its name (markup) kept as text."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_api_analytics import read_models_caught_up
from tests.e2e.test_campaigns import _tenant, campaign, wait_status
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    DIALOGS,
    PASSWORD,
    WAIT_MS,
    _shots,
    _sign_in,
    _user,
    browser,
    pytestmark,
)
from tests.support.fakes import wait_for

XSS = "<img src=x onerror=alert(1)>"


def _loaded(page: Any, query_part: str = "") -> None:
    """The page has drawn the figures of a query (containing `query_part`)."""
    page.wait_for_function(
        "(part) => (document.body.dataset.loaded || '').includes(part)", arg=query_part,
        timeout=WAIT_MS,
    )  # fmt: skip


def _summary(page: Any, chart: str) -> str:
    return str(page.locator(f'[data-testid="chart-{chart}"] svg').first.get_attribute("aria-label"))


def _rows(page: Any, chart: str) -> list[list[str]]:
    return list(
        page.evaluate(
            "(key) => [...document.querySelectorAll(`#chart-${key} table tbody tr`)]"
            ".map(tr => [...tr.cells].map(c => c.textContent))",
            chart,
        )
    )


def test_the_charts_show_the_traffic_in_their_accessible_text(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=2)
    number, quiet = list(tenant.numbers)
    ann, bo = new_customer(), new_customer()
    tenant.webhook(number, ann, "hello charts")
    tenant.webhook(number, bo, "hi charts")
    for customer, text in ((ann, "hello charts"), (bo, "hi charts")):
        wait_for(lambda c=customer, x=text: f"echo: {x}" in running.graph.texts_to(c))
    bo_id = tenant.conversation(number, bo)["id"]
    assert tenant.call("POST", f"/v1/conversations/{bo_id}/handoff", {}, role="agent").status == 200
    body = {"phone_number_id": number, "to": bo, "type": "text", "text": {"body": "Ada here"}}
    assert tenant.call("POST", "/v1/messages", body, role="agent").status == 202
    wait_for(lambda: "Ada here" in running.graph.texts_to(bo), message="the agent's reply")
    assert tenant.call("POST", f"/v1/conversations/{bo_id}/release", role="agent").status == 200
    # Asked from a thread: playwright's own event loop runs in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(running.fences, {ann: number, bo: number}).result()
        pool.submit(read_models_caught_up, running).result()
    # In: 2 each (one, and the fence). Out: the bot's 2 each (its reply and the fence's),
    # the agent's 1.
    today = datetime.now(UTC).date().isoformat()

    page = _sign_in(browser, running, _user(tenant, "viewer"))
    page.goto(running.api_url + "/console/analytics")
    _loaded(page)
    assert page.locator("#analytics-to").input_value() == today
    messages = _summary(page, "messages")
    assert "4 received and 5 sent in all" in messages, messages
    assert [today, "4", "5"] in _rows(page, "messages")
    assert len(_rows(page, "messages")) == 14  # the last 14 days, by default
    responses = _summary(page, "responses")
    assert (
        "4 responses" in responses
        and "Agents: median" in responses
        and "1 responses" in (responses)
    ), responses
    [bot, agent] = _rows(page, "responses")
    assert (bot[0], bot[3], agent[0], agent[3]) == ("The bot", "4", "Agents", "1")
    assert _summary(page, "handoffs") == "1 of 2 conversations handed off to a person (50%)."
    assert _rows(page, "handoffs") == [["2", "1", "50%"]]
    assert "2 with the bot, 0 waiting, 0 with an agent, 0 closed" in _summary(page, "states")
    assert page.locator('[data-testid="chart-campaigns"]').inner_text().count("No campaign") >= 1
    # Every chart: a title, two axis labels, bars.
    for chart in ("messages", "responses", "handoffs", "states"):
        section = page.locator(f'[data-testid="chart-{chart}"]')
        assert section.locator("h2").inner_text()
        assert section.locator("svg .axis-label").count() == 2
        assert section.locator("svg rect.bar").count() >= 2
    page.screenshot(path=str(_shots(running) / "analytics.png"), full_page=True)

    # The quiet number: nothing.
    page.select_option('[data-testid="analytics-number"]', quiet)
    _loaded(page, quiet)
    assert _summary(page, "messages").startswith("No messages from")
    assert _summary(page, "handoffs") == "No conversations in the period."
    # A period ending before it starts: the API's refusal, with the field.
    page.fill('[data-testid="analytics-from"]', "2026-03-02")
    page.fill('[data-testid="analytics-to"]', "2026-03-01")
    page.click('[data-testid="analytics-show"]')
    page.locator('[data-testid="analytics-status"]', has_text="Refused").wait_for(timeout=WAIT_MS)
    assert "from" in page.locator('[data-testid="analytics-status"]').inner_text()
    page.close()

    # In Italian, for a user who chose it.
    italian = tenant.call(
        "POST", "/v1/users",
        {"email": f"it-{bo}@example.com", "name": "Lia", "role": "agent", "password": PASSWORD,
         "language": "it"},
    )  # fmt: skip
    assert italian.status == 201, italian
    page = _sign_in(browser, running, dict(italian.json))
    page.goto(running.api_url + "/console/analytics")
    _loaded(page)
    assert page.locator("h1").inner_text() == "Statistiche"
    assert "4 ricevuti e 5 inviati in tutto" in _summary(page, "messages")
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert [yesterday, "0", "0"] in _rows(page, "messages")
    page.close()


def test_a_campaigns_funnel_is_drawn_with_its_name_as_text(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = _tenant(running)
    ann, bo = new_customer(), new_customer()
    audience = {"recipients": [{"to": c, "variables": {"1": "you"}} for c in (ann, bo)]}
    made = campaign(tenant, audience, name=XSS)
    assert tenant.call("POST", f"/v1/campaigns/{made['id']}/start").status == 200
    wait_status(tenant, made["id"], "completed")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(read_models_caught_up, running).result()
    counts = tenant.call("GET", f"/v1/campaigns/{made['id']}").json["counts"]
    assert counts["total"] == 2 and counts["sent"] == 2

    page = _sign_in(browser, running, _user(tenant, "viewer"))
    page.goto(running.api_url + "/console/analytics")
    _loaded(page)
    [funnel] = page.locator('[data-testid="campaign-funnel"]').all()
    assert funnel.get_attribute("data-campaign-id") == made["id"]
    assert funnel.locator("h3").inner_text() == XSS  # the business's text, as text
    label = funnel.locator("svg").get_attribute("aria-label")
    assert label == (
        f"Campaign {XSS}: 2 recipients, 2 sent, {counts['delivered']} delivered,"
        f" {counts['read']} read, {counts['replied']} replied, 0 failed, 0 skipped."
    )
    stages = ("total", "sent", "delivered", "read", "replied", "failed", "skipped")
    assert _rows(page, "campaigns") == [[XSS, *(str(counts[s]) for s in stages)]]
    assert funnel.locator("rect.bar").count() == len(stages)
    # Nothing the campaign's name holds ran.
    assert page.evaluate("() => document.querySelectorAll('#chart-campaigns img').length") == 0
    assert DIALOGS == []
    page.screenshot(path=str(_shots(running) / "analytics-campaign.png"), full_page=True)
    page.close()
