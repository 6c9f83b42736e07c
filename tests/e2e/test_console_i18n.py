"""The console in Italian, in a real browser (Debian's chromium through playwright's
executable_path), against the whole stack: a user made with `language: it` signs in to an
Italian inbox (the scripts' texts too, the codes and hooks unchanged), switches to English in
the header and every page and later session of theirs stays English; a colleague's language
is their own; the sign-in page follows the browser's language; the choice needs the
session's CSRF token and one of the languages."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    PASSWORD,
    WAIT_MS,
    _shots,
    _sign_in,
    _state,
    _user,
    browser,
    pytestmark,
)
from tests.support.fakes import wait_for


def _italian_user(tenant: Tenant, role: str) -> dict[str, str]:
    email = f"it-{role}-{uuid.uuid4().hex[:8]}@example.com"
    answer = tenant.call(
        "POST", "/v1/users",
        {"email": email, "name": "Bea", "role": role, "password": PASSWORD, "language": "it"},
    )  # fmt: skip
    assert answer.status == 201 and answer.json["language"] == "it", answer
    return dict(answer.json)


def test_an_italian_user_works_in_italian_and_switches_to_english(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "ciao")
    wait_for(lambda: "echo: ciao" in running.graph.texts_to(customer), message="bot reply")
    tenant.conversation(number, customer)
    italian = _italian_user(tenant, "agent")
    english = _user(tenant, "agent")
    page = _sign_in(browser, running, italian)
    assert page.locator("html").get_attribute("lang") == "it"
    assert page.locator('[data-testid="take-over"]').inner_text() == "Prendi in carico"
    assert "Posta in arrivo" in page.locator("nav.pages").inner_text()
    item = page.locator(f'[data-testid="inbox-item"][data-conversation-id="{cid}"]')
    item.wait_for(timeout=WAIT_MS)
    item.click()
    page.click('[data-testid="take-over"]')
    _state(page, "agent")
    # The script's texts are Italian; the state's code is not.
    badge = page.locator('[data-testid="conversation-state"]')
    assert badge.inner_text() == "Con una persona" and badge.get_attribute("data-state") == "agent"
    assert page.locator("#conversation-assignee").inner_text() == "assegnata a te"
    page.fill('[data-testid="reply-input"]', "arrivo subito")
    page.click('[data-testid="reply-send"]')
    wait_for(lambda: "arrivo subito" in running.graph.texts_to(customer), message="agent reply")
    # Ticks are read out in Italian.
    status = page.locator('[data-testid="message-status"]').last
    status.wait_for(timeout=WAIT_MS)
    assert status.get_attribute("aria-label") in {"in coda", "inviato", "consegnato", "letto"}
    page.screenshot(path=str(_shots(running) / "console-italian.png"), full_page=True)

    # Another user of the business sees English: the language is theirs, not the business's.
    other = _sign_in(browser, running, english)
    assert other.locator('[data-testid="take-over"]').inner_text() == "Take over"
    other.close()

    # The header's choice: English from now on, on every page and in the next session.
    page.select_option('[data-testid="language"]', "en")
    page.wait_for_load_state()
    page.wait_for_function("document.documentElement.lang === 'en'", timeout=WAIT_MS)
    assert page.locator('[data-testid="take-over"]').inner_text() == "Take over"
    page.goto(running.api_url + "/console/contacts")
    assert page.locator("nav.pages").inner_text().startswith("Inbox")
    # A change on another page comes back to it.
    page.select_option('[data-testid="language"]', "it")
    page.wait_for_function("document.documentElement.lang === 'it'", timeout=WAIT_MS)
    assert page.url.endswith("/console/contacts")
    page.select_option('[data-testid="language"]', "en")
    page.wait_for_function("document.documentElement.lang === 'en'", timeout=WAIT_MS)
    page.close()
    again = _sign_in(browser, running, italian)
    assert again.locator("html").get_attribute("lang") == "en"
    listed = {u["id"]: u for u in tenant.call("GET", "/v1/users").json["data"]}
    assert listed[italian["id"]]["language"] == "en"
    assert listed[english["id"]]["language"] == "en"
    again.close()


def test_the_sign_in_page_follows_the_browser_and_the_choice_is_checked(
    running: Running,
    browser: Any,  # noqa: F811
) -> None:
    context = browser.new_context(
        locale="it-IT", extra_http_headers={"Accept-Language": "it-IT,it;q=0.9"}
    )
    try:
        page = context.new_page()
        page.goto(running.api_url + "/console/")
        assert page.locator("h1").inner_text() == "Accedi"
        page.fill("input[name=email]", "nobody@example.com")
        page.fill("input[name=password]", "wrong password!")
        page.click("button[type=submit]")
        assert page.locator("[role=alert]").inner_text() == "Email o password errate."
    finally:
        context.close()

    # The language form: without the session's CSRF token, 403; a language we lack, 422.
    tenant = make_tenant(running, numbers=1)
    user = _user(tenant, "viewer")
    page = _sign_in(browser, running, user)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    csrf = page.locator("body").get_attribute("data-csrf")
    page.close()

    def choose(fields: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(
            running.api_url + "/console/language",
            data=urllib.parse.urlencode(fields).encode(),
            headers={
                "Cookie": f"console_session={cookies['console_session']}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            method="POST",
        )

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        try:
            with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as resp:
                return resp.status, ""
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Location", "")

    assert choose({"language": "it"})[0] == 403
    assert choose({"language": "fr", "csrf": csrf or ""})[0] == 422
    assert choose({"language": "it", "csrf": csrf or ""}) == (303, "/console/")
    # Back to one of the console's pages only: any other address is the inbox.
    for elsewhere in ("https://example.com/", "//example.com", "/console/../v1/users"):
        assert choose({"language": "it", "csrf": csrf or "", "back": elsewhere}) == (
            303, "/console/"
        )  # fmt: skip
    assert choose({"language": "it", "csrf": csrf or "", "back": "/console/contacts"}) == (
        303, "/console/contacts"
    )  # fmt: skip
    listed = {u["id"]: u for u in tenant.call("GET", "/v1/users").json["data"]}
    assert listed[user["id"]]["language"] == "it"
    # A language the API does not have is refused with its field.
    refused = tenant.call(
        "POST", "/v1/users",
        {"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "role": "agent",
         "password": PASSWORD, "language": "fr"},
    )  # fmt: skip
    assert refused.status == 422 and "language" in str(refused.json), refused
