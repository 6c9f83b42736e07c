"""The console's settings page in a real browser (Debian's chromium through playwright's
executable_path), against the whole stack: an admin issues an API key in the page and it
works against /v1 until revoked (then 401); adds a user (the API's 422 shown next to the
field) who then signs in; registers a CRM endpoint pointing at a real HTTP receiver, sees an
event's delivery in the log and replays it (the receiver gets it a second time), sees the
deliveries of a failing receiver dead and replays them once it is back; disables, rotates
and deletes it. An agent's page has no settings controls and the server refuses
their writes with the session cookie; names and descriptions with markup stay text. And
`PATCH /v1/users/{id}`: the business's last admin keeps the role (409 `last_admin`)."""

from __future__ import annotations

import concurrent.futures
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.api_support import Tenant, make_tenant, meta_id, new_customer
from tests.e2e.harness import Running
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
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import Fault, wait_for

XSS = "<img src=x onerror=alert(1)>"
TIMEOUT = 60.0
# A customer's message, the bot's reply decided, and sent: each conversation's events here.
EXPECTED = sorted(["message.received", "conversation.reply", "message.sent"])


@pytest.fixture
def crm() -> Iterator[FakeCRM]:
    receiver = FakeCRM().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def tenant(running: Running) -> Iterator[Tenant]:
    made = make_tenant(running, numbers=1)
    yield made
    # Later tests' events must not queue for a receiver that is gone.
    for endpoint in made.call("GET", "/v1/webhooks/endpoints?limit=200").json["data"]:
        made.call("DELETE", f"/v1/webhooks/endpoints/{endpoint['id']}")


def _row(page: Any, testid: str, has_text: str) -> Any:
    return page.locator(f'[data-testid="{testid}"]', has_text=has_text)


def _accepted(crm: FakeCRM, webhook_id: str) -> bool:
    return any(not r.fault for r in crm.by_webhook_id(webhook_id))


def _confirm(row: Any) -> None:
    row.locator('[data-testid="confirm-yes"]').click()


def test_an_admin_manages_keys_users_and_webhooks_in_the_page(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
    tenant: Tenant,
    crm: FakeCRM,
) -> None:
    number = next(iter(tenant.numbers))
    admin = _user(tenant, "admin")
    page = _sign_in(browser, running, admin)
    page.goto(running.api_url + "/console/settings")

    # Numbers: the business's one, with its display number.
    numbers = page.locator('[data-testid="number-row"]')
    numbers.first.wait_for(timeout=WAIT_MS)
    assert numbers.count() == 1
    assert "+1 555 0100" in numbers.inner_text() and number in numbers.inner_text()

    # API keys: issued in the page, the secret shown once, working against /v1.
    key_name = "crm <b>sync</b>"
    page.fill('[data-testid="key-name"]', key_name)
    page.select_option('[data-testid="key-role"]', "agent")
    page.click('[data-testid="key-issue"]')
    secret = page.locator('[data-testid="key-secret"]')
    secret.wait_for(state="visible", timeout=WAIT_MS)
    key = secret.input_value()
    assert key.startswith("wak_") and secret.get_attribute("readonly") is not None
    assert page.locator("#key-secret-box", has_text="Shown only now").is_visible()
    assert running.api("GET", "/v1/conversations", token=key).status == 200
    assert (
        running.api("POST", "/v1/api-keys", {"name": "x", "role": "admin"}, token=key).status == 403
    )
    row = _row(page, "key-row", key_name)
    row.wait_for(timeout=WAIT_MS)
    assert row.locator("b").count() == 0  # the name's markup is text
    page.click("#key-secret-done")
    assert secret.input_value() == "" and not secret.is_visible()
    row.locator('[data-testid="key-revoke"]').click()
    _confirm(row)
    page.locator("#key-status", has_text="is revoked").wait_for(timeout=WAIT_MS)
    assert running.api("GET", "/v1/conversations", token=key).status == 401

    # Users: the API's 422 shown next to its field, nothing made; then a user who signs in.
    email = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    name = "<i>Bob</i> " + XSS
    page.fill('[data-testid="user-email"]', email)
    page.fill('[data-testid="user-name"]', name)
    page.select_option('[data-testid="user-role"]', "viewer")
    page.fill('[data-testid="user-password"]', "short")
    page.click('[data-testid="user-add"]')
    problem = page.locator("#user-password-error")
    problem.filter(has_text="10").wait_for(timeout=WAIT_MS)
    assert page.locator("#user-email-error").inner_text() == ""
    emails = [u["email"] for u in tenant.call("GET", "/v1/users").json["data"]]
    assert email not in emails
    page.fill('[data-testid="user-email"]', "not an email")
    page.fill('[data-testid="user-password"]', PASSWORD)
    page.click('[data-testid="user-add"]')
    page.locator("#user-email-error").filter(has_text="match").wait_for(timeout=WAIT_MS)
    assert problem.inner_text() == ""
    page.fill('[data-testid="user-email"]', email)
    page.select_option('[data-testid="user-language"]', "it")
    page.click('[data-testid="user-add"]')
    page.locator("#user-status", has_text="can sign in now").wait_for(timeout=WAIT_MS)
    bob_row = _row(page, "user-row", email)
    bob_row.wait_for(timeout=WAIT_MS)
    assert bob_row.locator("td").first.inner_text() == name
    assert bob_row.locator("i, img").count() == 0
    [bob] = [u for u in tenant.call("GET", "/v1/users").json["data"] if u["email"] == email]
    assert (bob["role"], bob["language"]) == ("viewer", "it")
    bob_page = _sign_in(browser, running, {"email": email})
    bob_page.goto(running.api_url + "/console/settings")
    assert bob_page.locator("html").get_attribute("lang") == "it"
    note = bob_page.locator('[data-testid="settings-admin-only"]')
    assert note.inner_text() == "Solo un amministratore gestisce le impostazioni."
    # Promoted in the page, Bob sees the settings on his next page.
    bob_row.locator('[data-testid="user-role-select"]').select_option("admin")
    page.locator("#user-status", has_text="is now").wait_for(timeout=WAIT_MS)
    bob_page.reload()
    bob_page.locator('[data-testid="key-row"]').first.wait_for(timeout=WAIT_MS)
    # In his language, the script's texts too.
    assert bob_page.locator('[data-testid="key-revoke"]').first.inner_text() == "Revoca"
    bob_page.close()
    # One's own row cannot be deleted from the page; another's can, after a confirmation.
    own = page.locator(f'[data-testid="user-row"][data-user-id="{admin["id"]}"]')
    assert own.locator('[data-testid="user-delete"]').count() == 0
    assert own.locator('[data-testid="user-role-select"]').is_disabled()
    bob_row.locator('[data-testid="user-delete"]').click()
    bob_row.locator('[data-testid="confirm-no"]').click()  # cancelled: still there
    assert tenant.call("GET", "/v1/users").json["data"][0]["email"] == email
    bob_row.locator('[data-testid="user-delete"]').click()
    _confirm(bob_row)
    page.locator("#user-status", has_text="is deleted").wait_for(timeout=WAIT_MS)
    assert email not in [u["email"] for u in tenant.call("GET", "/v1/users").json["data"]]

    # CRM webhooks: an endpoint at a real receiver, its secret shown once.
    page.locator("#event-type-list input").first.wait_for(timeout=WAIT_MS)
    page.fill('[data-testid="endpoint-url"]', crm.endpoint_url)
    page.fill('[data-testid="endpoint-description"]', XSS)
    page.click('[data-testid="endpoint-add"]')
    first_secret = page.locator('[data-testid="endpoint-secret"]')
    first_secret.wait_for(state="visible", timeout=WAIT_MS)
    whsec = first_secret.input_value()
    assert whsec.startswith("whsec_")
    endpoint = _row(page, "endpoint-row", crm.endpoint_url)
    endpoint.wait_for(timeout=WAIT_MS)
    assert endpoint.locator("td").nth(1).inner_text() == XSS
    assert endpoint.locator("img").count() == 0

    # An event reaches the receiver; the page's log shows its delivery; a replay resends it.
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "hello CRM")
    wait_for(lambda: sorted(e["type"] for e in crm.events(cid)) == EXPECTED, timeout=TIMEOUT,
             message="the conversation's events at the receiver")  # fmt: skip
    [first, *_] = [
        r for r in crm.accepted() if json.loads(r.body)["data"].get("conversation_id") == cid
    ]
    received, webhook_id = json.loads(first.body), first.headers["webhook-id"]
    endpoint.locator('[data-testid="endpoint-deliveries"]').click()
    delivery = page.locator(f'[data-testid="delivery-row"][data-delivery-id="{webhook_id}"]')
    delivery.wait_for(timeout=WAIT_MS)
    page.wait_for_selector(
        f'[data-testid="delivery-row"][data-delivery-id="{webhook_id}"][data-state="succeeded"]',
        timeout=WAIT_MS,
    )
    assert received["type"] in delivery.inner_text() and "200" in delivery.inner_text()
    assert len(crm.by_webhook_id(webhook_id)) == 1
    delivery.locator('[data-testid="delivery-replay"]').click()
    wait_for(lambda: len(crm.by_webhook_id(webhook_id)) == 2, timeout=TIMEOUT,
             message="the replayed delivery at the receiver")  # fmt: skip
    assert crm.by_webhook_id(webhook_id)[1].body == crm.by_webhook_id(webhook_id)[0].body
    page.wait_for_selector(
        f'[data-testid="delivery-row"][data-delivery-id="{webhook_id}"][data-replays="1"]',
        timeout=WAIT_MS,
    )
    # A receiver that fails: the next customer's deliveries end dead, shown so in the log;
    # once it answers again, "replay the dead letters" delivers each of them.
    crm.fail_always(Fault(status=500))
    other = new_customer()
    tenant.webhook(number, other, "while the CRM is down")
    path = f"/v1/webhooks/dead-letters?endpoint_id={endpoint.get_attribute('data-endpoint-id')}"

    def dead() -> list[str]:
        found = tenant.call("GET", path).json["data"]
        return [
            d["id"] for d in found if d["conversation"] == tenant.conversation_id(number, other)
        ]

    # The same three events as the first conversation's, each dead.
    wait_for(lambda: len(dead()) == len(EXPECTED), timeout=TIMEOUT,
             message="the failing receiver's deliveries dead")  # fmt: skip
    dead_ids = dead()
    for dead_id in dead_ids:
        page.wait_for_selector(
            f'[data-testid="delivery-row"][data-delivery-id="{dead_id}"][data-state="dead"]',
            timeout=WAIT_MS,
        )
    assert not any(_accepted(crm, dead_id) for dead_id in dead_ids)
    crm.clear_faults()
    page.click('[data-testid="replay-dead"]')
    page.locator(
        "#deliveries-status", has_text=f"{len(dead_ids)} dead deliveries sent again"
    ).wait_for(timeout=WAIT_MS)
    wait_for(lambda: all(_accepted(crm, d) for d in dead_ids), timeout=TIMEOUT,
             message="the dead letters delivered")  # fmt: skip
    for dead_id in dead_ids:
        page.wait_for_selector(
            f'[data-testid="delivery-row"][data-delivery-id="{dead_id}"][data-state="succeeded"]',
            timeout=WAIT_MS,
        )
    page.screenshot(path=str(_shots(running) / "settings.png"), full_page=True)

    # Disable, enable, rotate (a new secret, shown once), delete: each through the API.
    endpoint.locator('[data-testid="endpoint-disable"]').click()
    endpoint.locator('[data-state="disabled"]').wait_for(timeout=WAIT_MS)
    endpoint_id = endpoint.get_attribute("data-endpoint-id")
    assert tenant.call("GET", f"/v1/webhooks/endpoints/{endpoint_id}").json["enabled"] is False
    endpoint.locator('[data-testid="endpoint-enable"]').click()
    endpoint.locator('[data-state="enabled"]').wait_for(timeout=WAIT_MS)
    fingerprints = tenant.call("GET", f"/v1/webhooks/endpoints/{endpoint_id}").json
    endpoint.locator('[data-testid="endpoint-rotate"]').click()
    _confirm(endpoint)
    page.locator("#endpoint-status", has_text="new secret").wait_for(timeout=WAIT_MS)
    rotated = page.locator('[data-testid="endpoint-secret"]').input_value()
    assert rotated.startswith("whsec_") and rotated != whsec
    after = tenant.call("GET", f"/v1/webhooks/endpoints/{endpoint_id}").json
    assert after["secret_fingerprints"][0] != fingerprints["secret_fingerprints"][0]
    endpoint.locator('[data-testid="endpoint-delete"]').click()
    _confirm(endpoint)
    page.locator("#endpoint-status", has_text="is deleted").wait_for(timeout=WAIT_MS)
    assert tenant.call("GET", f"/v1/webhooks/endpoints/{endpoint_id}").status == 404
    assert page.locator('[data-testid="endpoint-row"]').count() == 0
    assert DIALOGS == []  # no markup ran


def test_an_agent_has_no_settings_and_the_server_refuses_their_writes(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
    tenant: Tenant,
) -> None:
    for role in ("agent", "viewer"):
        page = _sign_in(browser, running, _user(tenant, role))
        page.goto(running.api_url + "/console/settings")
        assert page.locator('[data-testid="settings-admin-only"]').is_visible()
        assert page.locator("main button, main input, main select").count() == 0
        assert page.locator("#key-form, #user-form, #endpoint-form").count() == 0
        csrf = page.evaluate("() => document.body.dataset.csrf")
        headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
        for path, body in (
            ("/v1/api-keys", {"name": "mine", "role": "admin"}),
            ("/v1/users", {"email": "x@example.com", "role": "admin", "password": PASSWORD}),
            ("/v1/webhooks/endpoints", {"url": "https://crm.example/hook"}),
        ):
            answer = page.request.post(
                running.api_url + path, data=json.dumps(body), headers=headers
            )
            assert answer.status == 403, (role, path, answer.status)
            assert answer.json()["error"]["code"] == "forbidden"
        assert page.request.get(running.api_url + "/v1/api-keys").status == 403
        page.close()
    # The fence: the same request with an admin's session is accepted (the refusals above
    # were the role's, not a malformed request's).
    page = _sign_in(browser, running, _user(tenant, "admin"))
    csrf = page.evaluate("() => document.body.dataset.csrf")
    answer = page.request.post(
        running.api_url + "/v1/api-keys",
        data=json.dumps({"name": "mine", "role": "viewer"}),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert answer.status == 201
    page.close()
    names = [k["name"] for k in tenant.call("GET", "/v1/api-keys").json["data"]]
    assert names.count("mine") == 1


def test_the_last_admin_keeps_the_role(running: Running, tenant: Tenant) -> None:
    users = "/v1/users/"
    first = _user(tenant, "admin")
    # The business's keys are no users: its one admin user cannot lose the role.
    answer = tenant.call("PATCH", users + first["id"], {"role": "viewer"})
    assert answer.status == 409 and answer.json["error"]["code"] == "last_admin", answer
    assert tenant.call("PATCH", users + first["id"], {"role": "admin"}).status == 200
    answer = tenant.call("PATCH", users + first["id"], {"role": "owner"})
    assert answer.status == 422 and answer.json["error"]["fields"][0]["path"] == "role"
    answer = tenant.call("PATCH", users + first["id"], {"name": "x" * 201})
    assert answer.status == 422 and answer.json["error"]["fields"][0]["path"] == "name"
    assert tenant.call("PATCH", users + first["id"], {"email": "a@b.c"}).status == 422
    changed = tenant.call("PATCH", users + first["id"], {"name": "Ada L.", "language": "it"})
    assert changed.status == 200
    assert (changed.json["name"], changed.json["language"], changed.json["role"]) == (
        "Ada L.", "it", "admin",
    )  # fmt: skip
    # Another business's key gets 404, as for an unknown id; an agent's key 403.
    other = make_tenant(running, numbers=1)
    assert other.call("PATCH", users + first["id"], {"name": "taken"}).status == 404
    assert tenant.call("PATCH", users + "usr_nobody", {"name": "x"}).status == 404
    assert tenant.call("PATCH", users + first["id"], {"name": "x"}, role="agent").status == 403
    assert tenant.call("GET", "/v1/users").json["data"][0]["name"] == "Ada L."

    # Two admins demoting each other at the same moment: one of them stays admin.
    for _ in range(5):
        second = _user(tenant, "admin")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(
                    lambda who: tenant.call("PATCH", users + who["id"], {"role": "agent"}),
                    (first, second),
                )
            )
        assert sorted(a.status for a in answers) == [200, 409], answers
        roles = {u["id"]: u["role"] for u in tenant.call("GET", "/v1/users").json["data"]}
        assert sorted((roles[first["id"]], roles[second["id"]])) == ["admin", "agent"]
        if roles[first["id"]] != "admin":
            first = second
        assert tenant.call("PATCH", users + first["id"], {"role": "agent"}).status == 409


def test_the_directory_stays_writable_after_user_and_retention_writes(
    running: Running, tenant: Tenant
) -> None:
    """Users' and retention's events go to the business's stream too: the directory's next
    write (a key, a number) once failed its expected version with a 500 after them."""
    user = _user(tenant, "agent")
    assert tenant.call("PATCH", f"/v1/users/{user['id']}", {"role": "viewer"}).status == 200
    put = tenant.call("PUT", "/v1/privacy/retention", {"contacts_inactive_days": 400})
    assert put.status == 200, put
    assert tenant.call("DELETE", f"/v1/users/{user['id']}").status == 204
    issued = tenant.call("POST", "/v1/api-keys", {"name": "after users", "role": "viewer"})
    assert issued.status == 201, issued
    assert tenant.call("DELETE", f"/v1/api-keys/{issued.json['id']}").status == 204
    number = running.api(
        "POST",
        f"/v1/businesses/{tenant.id}/numbers",
        {"phone_number_id": meta_id(), "waba_id": next(iter(tenant.numbers.values())),
         "display_phone_number": "+1 555 0199", "access_token": "token-x"},
    )  # fmt: skip
    assert number.status == 201, number
