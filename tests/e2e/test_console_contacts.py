"""The console's contacts page in a real browser (Debian's chromium through playwright's
executable_path), against the whole stack: a CSV import through /v1/contacts (a bad row
refused with its line, markup in a name kept as text), search, tags, attributes and the
marketing opt-out saved through PATCH, and a contact's conversations linking to the inbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    WAIT_MS,
    _shots,
    _sign_in,
    _state,
    _user,
    browser,
    pytestmark,
)
from tests.support.fakes import wait_for

XSS = "<img src=x onerror=alert(1)>"


def _items(page: Any) -> Any:
    return page.locator('[data-testid="contact-item"]')


def test_import_search_edit_and_a_contacts_conversations(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    page = _sign_in(browser, running, _user(tenant, "agent"))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(running.api_url + "/console/contacts")

    grace, mallory = new_customer(), new_customer()
    csv = tmp_path / "contacts.csv"
    csv.write_text(
        "wa_id,name,tags,city\n"
        f'{grace},"Grace Hopper",vip;navy,Arlington\n'
        f'+{mallory},"{XSS.replace(chr(34), chr(34) * 2)}",,\n'
        "not-a-number,Nobody,,\n",
        encoding="utf-8",
    )
    page.set_input_files('[data-testid="import-file"]', str(csv))
    page.click("#import-send")
    summary = page.locator('[data-testid="import-summary"]')
    summary.wait_for(timeout=WAIT_MS)
    assert summary.inner_text() == "2 imported, 1 refused."
    problems = page.locator("#import-result .error").all_inner_texts()
    assert len(problems) == 1 and problems[0].startswith("Row 4:") and "wa_id" in problems[0]
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=contact-item]').length === 2",
        timeout=WAIT_MS,
    )
    assert XSS in _items(page).all_inner_texts()[0] + _items(page).all_inner_texts()[1]

    # Search, then edit: tags, an attribute, the opt-out; saved through the API.
    page.fill("#contact-search", "grace")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=contact-item]').length === 1",
        timeout=WAIT_MS,
    )
    _items(page).first.locator("button").click()
    tags = page.locator('[data-testid="contact-tags"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=contact-tags]').value === 'vip, navy'",
        timeout=WAIT_MS,
    )
    assert page.locator('[data-testid="contact-attributes"]').input_value() == "city=Arlington"
    tags.fill("vip, speaker")
    page.fill('[data-testid="contact-attributes"]', "city=Arlington\nlanguage=en")
    page.check('[data-testid="contact-opt-out"]')
    page.click('[data-testid="contact-save"]')
    page.locator("#contact-save-status", has_text="Saved.").wait_for(timeout=WAIT_MS)
    [found] = tenant.call("GET", f"/v1/contacts?q={grace}").json["data"]
    assert found["tags"] == ["vip", "speaker"]
    assert found["attributes"] == {"city": "Arlington", "language": "en"}
    assert found["marketing_opt_out"] is True
    # A tag filter finds her; a bad attribute line is refused in the page, nothing saved.
    page.fill("#contact-search", "")
    page.fill("#contact-tag", "speaker")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=contact-item]').length === 1",
        timeout=WAIT_MS,
    )
    page.fill('[data-testid="contact-attributes"]', "no equals sign")
    page.click('[data-testid="contact-save"]')
    page.locator("#contact-save-status", has_text="name=value").wait_for(timeout=WAIT_MS)
    # Notes: written in the page (markup stays text), newest first, deleted by their author.
    page.fill('[data-testid="note-text"]', "called twice " + XSS)
    page.click('[data-testid="note-add"]')
    note = page.locator('[data-testid="contact-note"]')
    note.first.wait_for(timeout=WAIT_MS)
    page.fill('[data-testid="note-text"]', "prefers mornings")
    page.click('[data-testid="note-add"]')
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=contact-note]').length === 2",
        timeout=WAIT_MS,
    )
    texts = note.locator(".text").all_inner_texts()
    assert texts == ["prefers mornings", "called twice " + XSS]
    assert "you" in note.first.locator(".meta").inner_text()
    [stored] = tenant.call("GET", f"/v1/contacts?q={grace}").json["data"]
    kept = tenant.call("GET", f"/v1/contacts/{stored['id']}/notes").json["data"]
    assert [n["text"] for n in kept] == texts
    note.first.locator('[data-testid="note-delete"]').click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=contact-note]').length === 1",
        timeout=WAIT_MS,
    )
    kept = tenant.call("GET", f"/v1/contacts/{stored['id']}/notes").json["data"]
    assert [n["text"] for n in kept] == ["called twice " + XSS]
    page.screenshot(path=str(_shots(running) / "contacts.png"))

    # Her conversation, once she writes, is listed and opens in the inbox.
    tenant.webhook(number, grace, "hello from Grace", name="Grace Hopper")
    cid = tenant.conversation_id(number, grace)
    wait_for(lambda: tenant.call("GET", f"/v1/conversations/{cid}").status == 200)
    page.fill("#contact-tag", "")
    page.fill("#contact-search", "grace")
    _items(page).first.wait_for(timeout=WAIT_MS)
    _items(page).first.locator("button").click()
    link = page.locator('[data-testid="contact-conversation"] a')
    link.wait_for(timeout=WAIT_MS)
    link.click()
    page.wait_for_url("**/console/#*")
    _state(page, "bot")
    assert page.locator("#conversation-title").inner_text() == "Grace Hopper"
    assert dialogs == []
