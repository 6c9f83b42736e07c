"""The console's conversation view in a real browser (Debian's chromium through playwright's
executable_path), against the whole stack: the delivery ticks of an agent's reply move
live as Meta's statuses arrive through the webhook (sent, delivered, read; a failed one
with its reason), a reply from the business's phone app shows as a person's and hands the
conversation off, a conversation is assigned to a colleague, and outside the 24 h window a
template is picked, its variables filled (with a preview) and sent."""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from typing import Any, cast

from shared.payloads import messages_payload, status_payload
from tests.e2e.api_support import make_tenant, new_customer
from tests.e2e.harness import Running
from tests.e2e.test_api_media import send_image
from tests.e2e.test_console import (  # noqa: F401  (browser: the module's fixture)
    WAIT_MS,
    _item,
    _shots,
    _sign_in,
    _state,
    _user,
    browser,
    pytestmark,
)
from tests.e2e.test_handoff import _echo
from tests.e2e.test_templates import NAMED
from tests.support.fakes import wait_for
from tests.support.media_fakes import FakeGraphMedia

SHIPPING = {
    "name": "shipping_update",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Parcel {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, it ships {{2}}."},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"},
        ]},
    ],
}  # fmt: skip


def _status(running: Running, number: str, waba: str, customer: str, wamid: str, status: str,
            errors: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
    payload = status_payload(wamid, status, customer, phone_number_id=number, errors=errors)
    payload["entry"][0]["id"] = waba
    answer, body = running.post(payload)
    assert answer == 200, body


def _tick(page: Any, text: str, status: str) -> None:
    message = page.locator('[data-testid="message"]', has_text=text)
    message.locator(f'[data-testid="message-status"][data-status="{status}"]').wait_for(
        timeout=WAIT_MS
    )


def test_ticks_follow_the_statuses_live_and_a_colleague_is_assigned(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    waba = tenant.numbers[number]
    agent = _user(tenant, "agent")
    colleague = _user(tenant, "agent")
    page = _sign_in(browser, running, agent)
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "where is my parcel?")
    _item(page, cid).wait_for(timeout=WAIT_MS)
    wait_for(lambda: "echo: where is my parcel?" in running.graph.texts_to(customer))
    _item(page, cid).locator("button").click()
    page.click('[data-testid="take-over"]')
    _state(page, "agent")

    for text in ("Let me check.", "It left the depot."):
        page.fill('[data-testid="reply-input"]', text)
        page.click('[data-testid="reply-send"]')
        wait_for(lambda t=text: t in running.graph.texts_to(customer), message=text)
    sends = {s["body"]["text"]["body"]: s["wamid"] for s in running.graph.sent_to(customer)}
    # Sent once Meta accepted it; then each status as its webhook arrives, without a reload.
    _tick(page, "Let me check.", "sent")
    for status in ("delivered", "read"):
        _status(running, number, waba, customer, sends["Let me check."], status)
        _tick(page, "Let me check.", status)
    failure = [{"code": 131047, "title": "Re-engagement message"}]
    _status(running, number, waba, customer, sends["It left the depot."], "failed", failure)
    _tick(page, "It left the depot.", "failed")
    failed = page.locator('[data-testid="message"]', has_text="It left the depot.")
    reason = failed.locator('[data-testid="message-status"]')
    assert reason.get_attribute("aria-label") == "failed: Re-engagement message (131047)"
    assert "Re-engagement message" in reason.inner_text()
    page.screenshot(path=str(_shots(running) / "conversation-ticks.png"))

    # Assigned to a colleague: the API records them, the page says so.
    page.select_option('[data-testid="assign-to"]', colleague["id"])
    wait_for(
        lambda: tenant.call("GET", f"/v1/conversations/{cid}").json["assignee"] == colleague["id"],
        message="assigned to the colleague",
    )
    page.locator("#conversation-assignee", has_text=f"assigned to {colleague['name']}").wait_for(
        timeout=WAIT_MS
    )
    _state(page, "agent")


def test_a_reply_from_the_phone_app_shows_as_a_persons_and_hands_off(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    page = _sign_in(browser, running, _user(tenant, "agent"))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "are you open today?")
    _item(page, cid).wait_for(timeout=WAIT_MS)
    wait_for(lambda: "echo: are you open today?" in running.graph.texts_to(customer))
    _item(page, cid).locator("button").click()
    _state(page, "bot")
    _echo(tenant, number, customer, "Yes, until 7pm!")
    _state(page, "waiting")
    mine = page.locator('[data-testid="message"]', has_text="Yes, until 7pm!")
    mine.wait_for(timeout=WAIT_MS)
    assert mine.get_attribute("data-author") == "agent"
    assert mine.locator('[data-testid="message-status"]').get_attribute("data-status") == "sent"


def test_outside_the_window_a_template_is_picked_filled_and_sent(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number, waba = next(iter(tenant.numbers.items()))
    running.graph.wabas[number] = waba
    running.graph.add_template(waba, **NAMED)
    running.graph.add_template(waba, **SHIPPING)
    assert tenant.call("POST", "/v1/templates/sync").status == 200
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    # The customer last wrote 25 hours ago (Meta's timestamp): the window is closed.
    old = {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time()) - 25 * 3600),
        "type": "text",
        "text": {"body": "my order from yesterday?"},
    }
    status, body = running.post(messages_payload([old], customer, number, waba_id=waba))
    assert status == 200, body
    wait_for(lambda: tenant.call("GET", f"/v1/conversations/{cid}").status == 200)
    page = _sign_in(browser, running, _user(tenant, "agent"))
    _item(page, cid).wait_for(timeout=WAIT_MS)
    _item(page, cid).locator("button").click()
    page.locator('[data-testid="template-select"]').wait_for(timeout=WAIT_MS)
    assert not page.locator('[data-testid="reply-input"]').is_visible()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=template-select] option').length > 1",
        timeout=WAIT_MS,
    )
    page.select_option('[data-testid="template-select"]', label="order_ready (en_US, utility)")
    fields = page.locator('[data-testid="template-variable"]')
    assert fields.count() == 2
    page.fill("#template-var-first_name", "Ann")
    page.fill("#template-var-order", "A-17")
    preview = page.locator('[data-testid="template-preview"]').inner_text()
    assert preview == "Hi Ann, order A-17 is ready."
    page.click('[data-testid="template-send"]')
    wait_for(
        lambda: any(s["body"].get("type") == "template" for s in running.graph.sent_to(customer)),
        message="the template at Meta",
    )
    [sent] = [s for s in running.graph.sent_to(customer) if s["body"].get("type") == "template"]
    assert sent["body"]["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Ann", "parameter_name": "first_name"},
        {"type": "text", "text": "A-17", "parameter_name": "order"},
    ]
    page.locator('[data-testid="message"]', has_text="[template order_ready]").wait_for(
        timeout=WAIT_MS
    )
    page.screenshot(path=str(_shots(running) / "conversation-template.png"))

    # A template with a header and a button to fill too, one value from the contact.
    page.select_option('[data-testid="template-select"]', label="shipping_update (en_US, utility)")
    labels = page.locator("#template-vars label").all_inner_texts()
    assert labels == ["Header {{1}}", "Body {{1}}", "Body {{2}}",
                      "Button 1 (Track): the end of its link"]  # fmt: skip
    page.fill("#template-var-header-1", "P-9")
    page.fill("#template-var-1", "{{contact.name}}")
    page.fill("#template-var-2", "today")
    page.fill("#template-var-button-0", "P-9")
    page.click('[data-testid="template-send"]')
    wait_for(
        lambda: (
            len([s for s in running.graph.sent_to(customer) if s["body"].get("type") == "template"])
            == 2
        ),
        message="the second template at Meta",
    )
    second = [s for s in running.graph.sent_to(customer) if s["body"].get("type") == "template"][1]
    assert second["body"]["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "P-9"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Demo Customer"},
                                        {"type": "text", "text": "today"}]},
        {"type": "button", "sub_type": "url", "index": "0",
         "parameters": [{"type": "text", "text": "P-9"}]},
    ]  # fmt: skip
    # A variable left empty: the API's refusal is shown, nothing sent.
    page.select_option('[data-testid="template-select"]', label="shipping_update (en_US, utility)")
    page.fill("#template-var-header-1", "P-9")
    page.click('[data-testid="template-send"]')
    page.locator("#template-error", has_text="needs").wait_for(timeout=WAIT_MS)
    assert len([s for s in running.graph.sent_to(customer)
                if s["body"].get("type") == "template"]) == 2  # fmt: skip


def _png() -> bytes:
    """A real 1x1 PNG, so the browser can prove it decoded the bytes it was served."""
    raw = b"\x00\xff\x00\x00"  # one row: filter byte, one red pixel

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_a_customers_photo_is_shown_from_the_api_and_the_caption_stays_text(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    page = _sign_in(browser, running, _user(tenant, "agent"))
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    graph = cast(FakeGraphMedia, running.graph)
    photo = graph.add_media(_png(), "image/png")
    caption = "<img src=x onerror=alert(1)> my receipt"
    send_image(tenant, number, customer, photo.media_id, caption=caption, mime_type="image/png")
    _item(page, cid).wait_for(timeout=WAIT_MS)
    _item(page, cid).locator("button").click()
    message = page.locator('[data-testid="message"][data-author="customer"]', has_text="my receipt")
    shown = message.locator('[data-testid="message-media"][data-kind="image"]')
    shown.wait_for(timeout=WAIT_MS)
    src = shown.get_attribute("src") or ""
    # Served by the api, for this session: the browser decoded the very pixel sent.
    assert src.startswith("/v1/conversations/") and src.endswith("/media"), src
    page.wait_for_function(
        "el => el.complete && el.naturalWidth === 1", arg=shown.element_handle(), timeout=WAIT_MS
    )
    # The caption is text beside it, not markup.
    assert caption in message.locator(".text").inner_text()
    assert message.locator("img").count() == 1
    page.screenshot(path=str(_shots(running) / "conversation-photo.png"))


def test_an_agent_attaches_a_photo_with_a_caption_and_a_document(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
    tmp_path: Any,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    tenant.use_graph_token(number)
    graph = cast(FakeGraphMedia, running.graph)
    customer = new_customer()
    cid = tenant.conversation_id(number, customer)
    tenant.webhook(number, customer, "can you show me?")
    wait_for(lambda: "echo: can you show me?" in graph.texts_to(customer))
    page = _sign_in(browser, running, _user(tenant, "agent"))
    _item(page, cid).wait_for(timeout=WAIT_MS)
    _item(page, cid).locator("button").click()
    photo, doc = tmp_path / "shelf.png", tmp_path / "manual.pdf"
    photo.write_bytes(_png())
    doc.write_bytes(b"%PDF-1.4 manual")
    page.set_input_files('[data-testid="reply-file"]', str(photo))
    page.fill('[data-testid="reply-input"]', "the shelf you asked about")
    page.click('[data-testid="reply-send"]')

    def sent(kind: str) -> list[dict[str, Any]]:
        return [s["body"] for s in graph.sent_to(customer) if s["body"].get("type") == kind]

    wait_for(lambda: bool(sent("image")), message="the photo at Meta")
    [image] = sent("image")
    assert image["image"]["caption"] == "the shelf you asked about"
    assert graph.upload(image["image"]["id"])["data"] == _png()  # the very bytes chosen
    assert sent("text") == [] or all("shelf" not in t["text"]["body"] for t in sent("text"))
    # A document with no text: its file name goes with it.
    page.set_input_files('[data-testid="reply-file"]', str(doc))
    page.click('[data-testid="reply-send"]')
    wait_for(lambda: bool(sent("document")), message="the document at Meta")
    [document] = sent("document")
    assert document["document"]["filename"] == "manual.pdf"
    assert graph.upload(document["document"]["id"])["data"] == b"%PDF-1.4 manual"
    # A file Meta would not take: refused in the page, nothing sent.
    odd = tmp_path / "tool.exe"
    odd.write_bytes(b"MZ")
    page.set_input_files('[data-testid="reply-file"]', str(odd))
    page.click('[data-testid="reply-send"]')
    page.locator("#reply-error", has_text="Meta does not take").wait_for(timeout=WAIT_MS)
    assert len(sent("image")) == 1 and len(sent("document")) == 1


def test_the_inbox_filters_by_number_and_by_tag(
    running: Running,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    tenant = make_tenant(running, numbers=2)
    first, second = list(tenant.numbers)
    page = _sign_in(browser, running, _user(tenant, "agent"))
    a, b = new_customer(), new_customer()
    tenant.webhook(first, a, "hello from a")
    tenant.webhook(second, b, "hello from b")
    ca, cb = tenant.conversation_id(first, a), tenant.conversation_id(second, b)
    for cid in (ca, cb):
        _item(page, cid).wait_for(timeout=WAIT_MS)
    contact = tenant.call("GET", f"/v1/conversations/{cb}").json["contact"]["id"]
    assert tenant.call("PATCH", f"/v1/contacts/{contact}", {"tags": ["vip"]}).status == 200

    page.select_option('[data-testid="number-filter"]', first)
    _item(page, cb).wait_for(state="detached", timeout=WAIT_MS)
    assert _item(page, ca).is_visible()
    page.select_option('[data-testid="number-filter"]', "")
    _item(page, cb).wait_for(timeout=WAIT_MS)

    page.fill('[data-testid="tag-filter"]', "vip")
    _item(page, ca).wait_for(state="detached", timeout=WAIT_MS)
    assert _item(page, cb).is_visible()
    page.fill('[data-testid="tag-filter"]', "")
    _item(page, ca).wait_for(timeout=WAIT_MS)
