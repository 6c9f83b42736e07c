"""Every console page on a phone-sized screen (390x844, in Debian's chromium through
playwright's executable_path): nothing wider than the screen (a page never scrolls
sideways; a wide table scrolls inside its own box), and every page's main controls are
visible. Screenshots of each go to the run's folder."""

from __future__ import annotations

from typing import Any

from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    PASSWORD,
    _shots,
    _user,
    browser,
    pytestmark,
)
from tests.support.fakes import wait_for

# The outermost elements reaching past the screen's right edge, to say what is too wide.
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .filter(e => !e.parentElement || e.parentElement.getBoundingClientRect().right
               <= document.documentElement.clientWidth + 1)
  .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className)"""
PAGES = {
    "/console/": "#inbox-list",
    "/console/contacts": "#contact-list",
    "/console/bot": "#bot-editor",
    "/console/campaigns": "#campaigns-page, main, .campaigns-layout",
    "/console/analytics": ".analytics",
    "/console/settings": "main, .settings",
}


def test_every_page_fits_a_phone(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    tenant.webhook(number, customer, "hello from a phone")
    wait_for(lambda: "echo: hello from a phone" in running.graph.texts_to(customer))
    tenant.conversation(number, customer)
    admin = _user(tenant, "admin")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(running.api_url + "/console/")
        page.fill("input[name=email]", admin["email"])
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/")
        wide = {}
        for path, main in PAGES.items():
            page.goto(running.api_url + path)
            page.locator(main).first.wait_for(timeout=10_000)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            if overflow > 1:
                wide[path] = (overflow, page.evaluate(WIDEST))
            name = path.strip("/").replace("/", "-") or "inbox"
            page.screenshot(path=str(_shots(running) / f"phone-{name}.png"), full_page=True)
        # A conversation open, its messages and reply box shown.
        page.goto(running.api_url + f"/console/#{tenant.conversation_id(number, customer)}")
        page.locator('[data-testid="message"]').nth(1).wait_for(timeout=10_000)
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 1:
            wide["conversation"] = (overflow, page.evaluate(WIDEST))
        assert page.locator('[data-testid="reply-input"]').is_visible()
        page.screenshot(path=str(_shots(running) / "phone-conversation.png"), full_page=True)
        assert wide == {}, f"pages wider than a phone (pixels): {wide}"
    finally:
        context.close()
