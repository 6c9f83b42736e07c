"""The console's bot page in a real browser (Debian's chromium through playwright's
executable_path), against the whole stack: an invalid definition's problems shown at their
line and path (the API's 422), the simulator playing the text being edited (nothing sent),
publishing a new version that then answers a customer; a non-admin is told it is not
theirs."""

from __future__ import annotations

from typing import Any

from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    WAIT_MS,
    _shots,
    _sign_in,
    _user,
    browser,
    pytestmark,
)
from tests.support.fakes import wait_for

BROKEN = """version: 1
language: en
rules:
  - id: greeting
    match: {any: ["hi"]}
    reply: {text: "Hi there!"}
  - id: broken
    match: {any: ["help"]}
    flow: nowhere
flows:
  support:
    steps:
      - id: ask
        ask: {text: "Your order number?"}
        save_as: order
"""
GOOD = """version: 1
language: en
rules:
  - id: greeting
    match: {any: ["hi", "hello"]}
    reply: {text: "Hi from the console's bot!"}
  - id: help
    match: {any: ["help"]}
    flow: support
flows:
  support:
    steps:
      - id: ask
        ask: {text: "Your order number?"}
        save: order
    done: {reply: {text: "Thanks, we'll look at {{slots.order}}."}}
"""


def _problems(page: Any) -> dict[str, str]:
    items = page.locator('[data-testid="bot-problem"]')
    return {
        items.nth(i).get_attribute("data-path"): items.nth(i).get_attribute("data-line")
        for i in range(items.count())
    }


def test_edit_check_simulate_and_publish_the_bot(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    page = _sign_in(browser, running, _user(tenant, "admin"))
    page.goto(running.api_url + "/console/bot")
    editor = page.locator('[data-testid="bot-editor"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=bot-editor]').value.includes('version: 1')",
        timeout=WAIT_MS,
    )

    # Problems at their line and path: the check (the simulator) and publish alike.
    editor.fill(BROKEN)
    page.click('[data-testid="bot-check"]')
    page.locator('[data-testid="bot-problem"]').first.wait_for(timeout=WAIT_MS)
    found = _problems(page)
    assert found == {"flows.support.steps[0].save_as": "15", "rules[1].flow": "9"}, found
    page.click('[data-testid="bot-publish"]')
    page.locator('[data-testid="bot-status"]', has_text="problems").wait_for(timeout=WAIT_MS)
    assert set(_problems(page)) == {"flows.support.steps[0].save_as", "rules[1].flow"}
    assert tenant.call("GET", f"/v1/numbers/{number}/bot").json["version"] == 0
    # A problem's button puts the cursor on its line.
    page.locator('[data-testid="bot-problem"][data-line="9"] button').click()
    selected = page.evaluate(
        "() => { const e = document.querySelector('[data-testid=bot-editor]');"
        " return e.value.slice(e.selectionStart, e.selectionEnd); }"
    )
    assert selected.strip() == "flow: nowhere"

    # The simulator plays the text being edited, a conversation at a time.
    editor.fill(GOOD)
    sends_before = len(running.graph.sent)
    for said in ("hello", "help", "A-1234"):
        page.fill('[data-testid="sim-input"]', said)
        page.click('[data-testid="sim-send"]')
        page.locator('[data-testid="sim-customer"]', has_text=said).wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="sim-reply"]', has_text="A-1234").wait_for(timeout=WAIT_MS)
    replies = page.locator('[data-testid="sim-reply"]').all_inner_texts()
    assert replies == [
        "Hi from the console's bot!",
        "Your order number?",
        "Thanks, we'll look at A-1234.",
    ]
    assert len(running.graph.sent) == sends_before  # simulated: nothing went to Meta
    page.screenshot(path=str(_shots(running) / "bot.png"))

    # Published: the API has the version, and it answers a customer.
    page.click('[data-testid="bot-publish"]')
    page.locator('[data-testid="bot-status"]', has_text="Published version 1").wait_for(
        timeout=WAIT_MS
    )
    assert tenant.call("GET", f"/v1/numbers/{number}/bot").json["source"] == GOOD
    customer = new_customer()
    tenant.webhook(number, customer, "hi")
    wait_for(
        lambda: "Hi from the console's bot!" in running.graph.texts_to(customer),
        message="the published bot's answer",
    )


def test_the_bot_page_is_an_admins(
    running: Running,
    browser: Any,  # noqa: F811
) -> None:
    tenant = make_tenant(running, numbers=1)
    page = _sign_in(browser, running, _user(tenant, "agent"))
    page.goto(running.api_url + "/console/bot")
    assert "Only an admin" in page.locator("main").inner_text()
    assert page.locator('[data-testid="bot-editor"]').count() == 0
