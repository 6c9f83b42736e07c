"""The console's templates and campaigns page in a real browser (Debian's chromium through
playwright's executable_path), against the whole stack and the fake Graph API: an admin
syncs the templates from Meta, builds a campaign to a tagged audience (one contact opted
out), sees the count before sending (the one the campaign then counts), fills a variable
(and one from the contact's name), starts it; Meta receives one template message per
reachable recipient with the variables filled; statuses posted through the webhook move the
progress live; the opted-out contact is listed as skipped; a 422 shows next to its field;
an agent sees the progress but no wizard nor controls, and the server refuses their create;
names with markup stay text; the page in Italian. Also: a NAMED template's header, body
and button fields, a start refused at the variables, Meta's failure code listed, and a
scheduled campaign paused, resumed and cancelled."""

from __future__ import annotations

import uuid
from typing import Any

from shared.payloads import status_payload
from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    DIALOGS,
    WAIT_MS,
    _shots,
    _sign_in,
    _user,
    browser,
    pytestmark,
)
from tests.support.fakes import meta_error, sends_to

XSS = "<img src=x onerror=alert(1)>"


def _value(page: Any, name: str) -> str:
    return str(page.locator(f'[data-testid="count-{name}"]').get_attribute("data-value"))


def _count_is(page: Any, name: str, value: int) -> None:
    page.wait_for_function(
        "([n, v]) => { const e = document.querySelector(`[data-testid=count-${n}]`);"
        " return e !== null && e.dataset.value === String(v); }",
        arg=[name, value],
        timeout=WAIT_MS,
    )


def test_an_admin_builds_starts_and_follows_a_campaign_an_agent_only_looks(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    waba = tenant.numbers[number]
    running.graph.wabas[number] = waba  # the fake Graph API checks templates sent from it
    promo = f"console_promo_{uuid.uuid4().hex[:6]}"
    running.graph.add_template(
        waba,
        name=promo,
        category="MARKETING",
        components=[{"type": "BODY", "text": "Hello {{1}}, {{2}} off today."}],
    )
    running.graph.add_template(
        waba, name=XSS, status="PENDING", components=[{"type": "BODY", "text": "x"}]
    )
    tag = f"spring{uuid.uuid4().hex[:6]}"
    people = {new_customer(): name for name in ("Ann", "Bo", "Cy")}
    for wa_id, name in people.items():
        made = tenant.call("POST", "/v1/contacts", {"wa_id": wa_id, "name": name, "tags": [tag]})
        assert made.status == 201, made
    opted = new_customer()
    made = tenant.call("POST", "/v1/contacts", {"wa_id": opted, "name": "Opt", "tags": [tag]})
    assert made.status == 201, made
    patched = tenant.call("PATCH", f"/v1/contacts/{made.json['id']}", {"marketing_opt_out": True})
    assert patched.status == 200, patched
    outsider = new_customer()  # untagged: never in the audience
    assert tenant.call("POST", "/v1/contacts", {"wa_id": outsider, "name": "Out"}).status == 201

    page = _sign_in(browser, running, _user(tenant, "admin"))
    page.goto(running.api_url + "/console/campaigns")
    page.click('[data-testid="templates-sync"]')
    rows = page.locator('[data-testid="template-row"]')
    rows.filter(has_text=promo).wait_for(timeout=WAIT_MS)
    assert "APPROVED" in rows.filter(has_text=promo).inner_text()
    pending = rows.filter(has_text=XSS)
    assert "PENDING" in pending.inner_text()  # markup in a template's name: text
    # Only approved templates are offered.
    options = page.locator('[data-testid="campaign-template"] option').all_inner_texts()
    assert any(promo in o for o in options) and not any(XSS in o for o in options)

    # A 422 next to its field: no name.
    page.select_option('[data-testid="campaign-template"]', label=f"{promo} (en_US) · MARKETING")
    page.fill('[data-testid="audience-tags"]', tag)
    page.click('[data-testid="campaign-create"]')
    page.locator('[data-testid="error-name"]').filter(has_text="length >= 1").wait_for(
        timeout=WAIT_MS
    )
    assert tenant.call("GET", "/v1/campaigns").json["data"] == []  # nothing recorded

    # The count before sending: four tagged, one opted out.
    page.fill('[data-testid="campaign-name"]', XSS)
    page.click('[data-testid="audience-count"]')
    result = page.locator('[data-testid="audience-result"]')
    page.wait_for_function(
        "() => document.querySelector('[data-testid=audience-result]').dataset.total === '4'",
        timeout=WAIT_MS,
    )
    assert result.get_attribute("data-reachable") == "3"
    assert result.get_attribute("data-opted-out") == "1"
    assert "4 in the audience: 3 will receive it." in result.inner_text()
    variables = page.locator('[data-testid="campaign-variable"]')
    assert variables.count() == 2
    variables.nth(0).fill("{{contact.name}}")
    variables.nth(1).fill("15%")
    page.screenshot(path=str(_shots(running) / "campaign-wizard.png"))
    page.click('[data-testid="campaign-create"]')

    page.wait_for_selector(
        '[data-testid="detail-status"][data-state="completed"]', timeout=WAIT_MS * 3
    )
    assert page.locator('[data-testid="detail-name"]').inner_text() == XSS
    [listed] = tenant.call("GET", "/v1/campaigns").json["data"]
    campaign_id = listed["id"]
    done = tenant.call("GET", f"/v1/campaigns/{campaign_id}").json
    # The figure shown before sending is the one the campaign counted.
    assert done["counts"]["total"] == 4 and done["counts"]["skipped"] == 1
    assert done["counts"]["total"] - done["counts"]["skipped"] == 3
    _count_is(page, "total", 4)
    _count_is(page, "sent", 3)
    _count_is(page, "skipped", 1)
    # The wizard is empty again, without an error (a recount left pending would say one).
    assert page.locator('[data-testid="campaign-name"]').input_value() == ""
    assert page.locator('[data-testid="error-audience"]').inner_text() == ""

    # Completed: every recipient sent or skipped; one template message to each reachable one.
    wamids = {}
    for wa_id, name in people.items():
        [sent] = running.graph.sent_to(wa_id)
        template = sent["body"]["template"]
        assert template["name"] == promo
        assert template["components"] == [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": name}, {"type": "text", "text": "15%"}],
            }
        ]
        wamids[wa_id] = sent["wamid"]
    assert running.graph.sent_to(opted) == [] and running.graph.sent_to(outsider) == []

    # Statuses through the webhook move the progress live (no reload).
    ann = next(iter(people))
    for status in ("delivered", "read"):
        code, _ = running.post(status_payload(wamids[ann], status, ann, phone_number_id=number))
        assert code == 200
    _count_is(page, "read", 1)
    _count_is(page, "delivered", 1)
    assert _value(page, "sent") == "3"

    # The recipients: the opted-out one skipped with the reason.
    page.select_option('[data-testid="recipient-filter"]', "skipped")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=recipient-row]')]"
        ".every(r => r.dataset.status === 'skipped')"
        " && document.querySelectorAll('[data-testid=recipient-row]').length === 1",
        timeout=WAIT_MS,
    )
    skipped = page.locator('[data-testid="recipient-row"]')
    assert opted in skipped.inner_text() and "opted out of marketing" in skipped.inner_text()
    page.select_option('[data-testid="recipient-filter"]', "")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=recipient-row]').length === 4",
        timeout=WAIT_MS,
    )
    page.screenshot(path=str(_shots(running) / "campaigns.png"), full_page=True)
    assert page.locator("img").count() == 0
    page.close()

    # An agent: the list and the progress, no wizard, no controls; the server refuses anyway.
    agent = _sign_in(browser, running, _user(tenant, "agent"))
    agent.goto(running.api_url + f"/console/campaigns#{campaign_id}")
    agent.locator('[data-testid="campaigns-read-only"]').wait_for(timeout=WAIT_MS)
    _count_is(agent, "read", 1)
    assert agent.locator('[data-testid="campaign-item"] .name').inner_text() == XSS
    for hidden in ("campaign-form", "templates-sync", "campaign-pause", "campaign-cancel"):
        assert agent.locator(f'[data-testid="{hidden}"]').count() == 0
    csrf = agent.locator("body").get_attribute("data-csrf")
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    refused = agent.request.post(
        running.api_url + "/v1/campaigns",
        data=(
            '{"name": "x", "template": {"name": "' + promo + '", "language": "en_US"},'
            ' "audience": {"tags": ["' + tag + '"]}}'
        ),
        headers=headers,
    )
    assert refused.status == 403, refused.text()
    paused = agent.request.post(
        running.api_url + f"/v1/campaigns/{campaign_id}/cancel", data="{}", headers=headers
    )
    assert paused.status == 403
    assert agent.locator("img").count() == 0
    agent.screenshot(path=str(_shots(running) / "campaigns-agent.png"), full_page=True)
    # In Italian: the shell and what the script writes.
    with agent.expect_navigation():  # the choice is kept with the user, the page reloads
        agent.select_option('[data-testid="language"]', "it")
    agent.goto(running.api_url + "/console/campaigns")
    agent.locator("h1", has_text="Modelli e campagne").wait_for(timeout=WAIT_MS)
    status = agent.locator('[data-testid="campaign-item"] .state')
    status.filter(has_text="completata").wait_for(timeout=WAIT_MS)
    assert status.get_attribute("data-state") == "completed"
    agent.close()
    assert DIALOGS == []


ORDER = {
    "category": "UTILITY",
    "parameter_format": "NAMED",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{order}}"},
        {"type": "BODY", "text": "Hi {{first_name}}, your order ships {{day}}."},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Thanks"},
            ],
        },
    ],
}


def _fill(page: Any, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        page.fill(f'[data-testid="campaign-variable"][data-variable="{name}"]', value)


def _wizard(page: Any, name: str, template: str, pasted: str, variables: dict[str, str]) -> None:
    page.fill('[data-testid="campaign-name"]', name)
    page.select_option('[data-testid="campaign-template"]', label=f"{template} (en_US) · UTILITY")
    page.check("#audience-kind-pasted")
    page.fill('[data-testid="audience-pasted"]', pasted)
    _fill(page, variables)


def _status(page: Any, status: str) -> None:
    page.wait_for_selector(
        f'[data-testid="detail-status"][data-state="{status}"]', timeout=WAIT_MS * 3
    )


def test_header_button_and_named_variables_a_refused_start_a_failure_and_the_controls(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    running.graph.wabas[number] = tenant.numbers[number]
    order = f"console_order_{uuid.uuid4().hex[:6]}"
    running.graph.add_template(tenant.numbers[number], name=order, **ORDER)
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    page = _sign_in(browser, running, _user(tenant, "admin"))
    page.goto(running.api_url + "/console/campaigns")
    page.locator('[data-testid="template-row"]', has_text=order).wait_for(timeout=WAIT_MS)
    page.select_option('[data-testid="campaign-template"]', label=f"{order} (en_US) · UTILITY")
    fields = page.locator('[data-testid="campaign-variable"]')
    assert [fields.nth(i).get_attribute("data-variable") for i in range(fields.count())] == [
        "header.order", "first_name", "day", "button.0",
    ]  # fmt: skip
    labels = page.locator("#campaign-variables label").all_inner_texts()
    assert labels == [
        "Header {{order}}", "Body {{first_name}}", "Body {{day}}",
        "Button 1 (Track): the end of its link",
    ]  # fmt: skip

    # Pasted numbers have no contact: {{contact.name}} is empty at start, which refuses it;
    # the draft stays, its error at the variables.
    ann, bo = new_customer(), new_customer()
    values = {"header.order": "A-17", "first_name": "{{contact.name}}", "day": "today"}
    _wizard(page, "first try", order, f"{ann}\n{bo}", values | {"button.0": "A-17"})
    page.click('[data-testid="campaign-create"]')
    error = page.locator('[data-testid="error-variables"]')
    error.filter(has_text="missing first_name").wait_for(timeout=WAIT_MS)
    assert (
        "The draft was saved but not started."
        in page.locator('[data-testid="campaign-error"]').inner_text()
    )
    [draft] = tenant.call("GET", "/v1/campaigns").json["data"]
    assert draft["status"] == "draft"
    page.locator(f'[data-campaign-id="{draft["id"]}"] button').click()
    _status(page, "draft")
    page.click('[data-testid="campaign-cancel"]')
    _status(page, "cancelled")
    assert page.locator('[data-testid="campaign-cancel"]').is_hidden()

    # Fixed: sent, Meta refusing Bo for good (131026), his failure listed with its code.
    running.graph.inject(meta_error(131026, match=sends_to(bo)))
    # Pasted as people write them: a +, a blank line, a line that is no number (left out).
    pasted = f"{ann}\n\n+{bo}\ncall me"
    _wizard(page, "second try", order, pasted, values | {"first_name": "Friend"})
    page.fill('[data-testid="campaign-variable"][data-variable="button.0"]', "A-17")
    page.click('[data-testid="campaign-create"]')
    _status(page, "completed")
    _count_is(page, "failed", 1)
    _count_is(page, "total", 2)
    left_out = page.locator('[data-testid="detail-error"]').inner_text()
    assert left_out.startswith("Line 4 left out:") and "call me" in left_out
    [to_ann] = running.graph.sent_to(ann)
    assert to_ann["body"]["template"]["components"] == [
        {"type": "header", "parameters": [
            {"type": "text", "text": "A-17", "parameter_name": "order"}]},
        {"type": "body", "parameters": [
            {"type": "text", "text": "Friend", "parameter_name": "first_name"},
            {"type": "text", "text": "today", "parameter_name": "day"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [
            {"type": "text", "text": "A-17"}]},
    ]  # fmt: skip
    page.select_option('[data-testid="recipient-filter"]', "failed")
    page.wait_for_function(
        "() => { const rows = document.querySelectorAll('[data-testid=recipient-row]');"
        " return rows.length === 1 && rows[0].dataset.status === 'failed'; }",
        timeout=WAIT_MS,
    )
    failed = page.locator('[data-testid="recipient-row"]')
    assert bo in failed.inner_text() and "(131026)" in failed.inner_text()

    # Scheduled an hour ahead (the browser's local time): pause, resume, cancel.
    ahead = page.evaluate(
        "() => { const d = new Date(Date.now() + 3600e3); const p = (n) => String(n)"
        ".padStart(2, '0'); return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}"
        "T${p(d.getHours())}:${p(d.getMinutes())}`; }"
    )
    cy = new_customer()
    _wizard(page, "later", order, cy, values | {"first_name": "Cy", "button.0": "C-1"})
    page.fill('[data-testid="campaign-schedule"]', ahead)
    page.click('[data-testid="campaign-create"]')
    _status(page, "scheduled")
    # Resumed before its time, it is scheduled again (its time kept), as the campaigns
    # service has it.
    for button, status in (("pause", "paused"), ("resume", "scheduled")):
        page.click(f'[data-testid="campaign-{button}"]')
        page.wait_for_function(
            "(s) => new RegExp(`^(${s})$`).test("
            "document.querySelector('[data-testid=detail-status]').dataset.state)",
            arg=status,
            timeout=WAIT_MS,
        )
    page.click('[data-testid="campaign-cancel"]')
    _status(page, "cancelled")
    later = [c for c in tenant.call("GET", "/v1/campaigns").json["data"] if c["name"] == "later"]
    assert [c["status"] for c in later] == ["cancelled"] and later[0]["schedule_at"]
    assert DIALOGS == []
    page.close()
