"""The console's accessibility in a real browser (Debian's chromium through playwright's
executable_path): axe-core (tests/a11y, pinned by its package-lock.json and vendored by
`make axe`; no CDN) finds no violation (labels, names, contrast to WCAG AA, landmarks...)
on the inbox with a conversation open, the contacts page, the bot page, the analytics
page (its charts drawn), the campaigns page and the settings page (a new key's secret, a
field's error and a delivery log shown); and the inbox and the reply box work from the
keyboard alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    WAIT_MS,
    _item,
    _sign_in,
    _state,
    _user,
    browser,
    pytestmark,
)
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import wait_for

AXE = (Path(__file__).parents[1] / "a11y" / "axe.min.js").read_text(encoding="utf-8")
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page: Any) -> list[str]:
    """axe-core's findings on the page as it is, one line each (evaluated through the
    browser's protocol, which the page's CSP does not govern)."""
    page.evaluate(AXE)
    found = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => v.id + ': ' + v.help + ' at ' +"
        " v.nodes.map(n => n.target.join(' ')).join(', '))",
        WCAG,
    )
    return list(found)


def test_the_pages_pass_axe_and_the_inbox_works_from_the_keyboard(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customers = [new_customer(), new_customer()]
    for n, customer in enumerate(customers):
        tenant.webhook(number, customer, f"hello number {n}", name=f"Customer {n}")
        wait_for(lambda c=customer, n=n: f"echo: hello number {n}" in running.graph.texts_to(c))
    page = _sign_in(browser, running, _user(tenant, "admin"))
    for customer in customers:
        _item(page, tenant.conversation_id(number, customer)).wait_for(timeout=WAIT_MS)

    # The keyboard alone: into the list, down to the other conversation, open it, reply.
    first = page.locator('[data-testid="inbox-item"] button').first
    first.focus()
    page.keyboard.press("ArrowDown")
    second = page.locator('[data-testid="inbox-item"]').nth(1)
    wanted = second.get_attribute("data-conversation-id")
    assert (
        page.evaluate(
            "() => document.activeElement.closest('[data-conversation-id]').dataset.conversationId"
        )
        == wanted
    )
    page.keyboard.press("Enter")
    _state(page, "bot")
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.dataset.testid === 'reply-input'",
        timeout=WAIT_MS,
    )
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    # The conversation id names the customer by their key, a pseudonym: whose is it?
    [customer] = [c for c in customers if tenant.conversation_id(number, c) == wanted]
    wait_for(
        lambda: "Typed without a mouse" in running.graph.texts_to(customer),
        message="the reply sent from the keyboard",
    )
    page.locator('[data-testid="message"]', has_text="Typed without a mouse").wait_for(
        timeout=WAIT_MS
    )
    assert violations(page) == []

    page.goto(running.api_url + "/console/contacts")
    page.locator('[data-testid="contact-item"]').first.wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="contact-item"] button').first.click()
    page.locator('[data-testid="contact-conversation"]').first.wait_for(timeout=WAIT_MS)
    assert violations(page) == []

    page.goto(running.api_url + "/console/bot")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=bot-editor]').value.includes('version')",
        timeout=WAIT_MS,
    )
    assert violations(page) == []

    page.goto(running.api_url + "/console/analytics")
    page.wait_for_function("() => document.body.dataset.loaded", timeout=WAIT_MS)
    page.locator("#chart-messages details summary").click()  # a table shown, checked too
    assert violations(page) == []
    # The campaigns page: the templates, the wizard with a template chosen and a count, a
    # 422 shown at its field, a campaign open with its progress and recipients.
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    hello = {"name": "hello_world", "language": "en_US"}
    made = tenant.call(
        "POST", "/v1/campaigns",
        {"name": "a11y", "template": hello, "audience": {"recipients": [{"to": customers[0]}]}},
    )  # fmt: skip
    assert made.status == 201, made
    assert tenant.call("POST", f"/v1/campaigns/{made.json['id']}/start").status == 200
    page.goto(running.api_url + f"/console/campaigns#{made.json['id']}")
    page.locator('[data-testid="recipient-row"]').first.wait_for(timeout=WAIT_MS)
    page.select_option('[data-testid="campaign-template"]', label="hello_world (en_US) · UTILITY")
    page.check("#audience-kind-pasted")
    page.fill('[data-testid="audience-pasted"]', customers[1])
    page.click('[data-testid="audience-count"]')
    page.locator('[data-testid="audience-result"]', has_text="1 in the audience").wait_for(
        timeout=WAIT_MS
    )
    page.click('[data-testid="campaign-create"]')
    page.locator('[data-testid="error-name"]').filter(has_text="length").wait_for(timeout=WAIT_MS)
    assert violations(page) == []
    # The campaign's send and its outcome recorded before the endpoint exists (a fence: its
    # events would otherwise be the endpoint's first deliveries, and the panel not empty).
    campaign = made.json["id"]
    wait_for(
        lambda: tenant.call("GET", f"/v1/campaigns/{campaign}").json["status"] == "completed",
        message="the campaign's one send done",
    )
    crm = FakeCRM().start()
    made = tenant.call(
        "POST", "/v1/webhooks/endpoints", {"url": crm.endpoint_url, "description": "<b>CRM</b>"}
    )
    assert made.status == 201, made
    try:
        page.goto(running.api_url + "/console/settings")
        page.locator('[data-testid="endpoint-row"]').first.wait_for(timeout=WAIT_MS)
        page.locator('[data-testid="key-row"]').first.wait_for(timeout=WAIT_MS)
        page.locator('[data-testid="number-row"]').first.wait_for(timeout=WAIT_MS)
        page.fill('[data-testid="key-name"]', "for axe")
        page.click('[data-testid="key-issue"]')
        page.locator('[data-testid="key-secret"]').wait_for(state="visible", timeout=WAIT_MS)
        page.fill('[data-testid="user-email"]', "axe@example.com")
        page.fill('[data-testid="user-password"]', "short")
        page.click('[data-testid="user-add"]')
        page.locator("#user-password-error").filter(has_text="10").wait_for(timeout=WAIT_MS)
        page.locator('[data-testid="endpoint-deliveries"]').first.click()
        page.locator("#deliveries-panel").wait_for(state="visible", timeout=WAIT_MS)
        page.locator("#deliveries-empty").wait_for(state="visible", timeout=WAIT_MS)
        page.locator('[data-testid="key-revoke"]').first.click()  # a confirmation in place
        page.locator('[data-testid="confirm-yes"]').wait_for(timeout=WAIT_MS)
        assert violations(page) == []
    finally:
        tenant.call("DELETE", f"/v1/webhooks/endpoints/{made.json['id']}")
        crm.stop()

    # The check can fail: an input without a label is found.
    page.evaluate("() => document.body.append(document.createElement('input'))")
    assert any(v.startswith("label:") for v in violations(page))
