"""split_delivery: every item of a delivery, raw and in Meta's order; nothing raises."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.dedup.split import Change, Inbound, Status, split_delivery
from tests.support import pywa

ALL = pywa.payloads()


def expected_items(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the delivery carries, walked independently: (kind, raw) in Meta's order."""
    out: list[tuple[str, Any]] = []
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if change["field"] != "messages":
                out.append(("change", change["field"]))
                continue
            out += [("inbound", m) for m in value.get("messages") or []]
            out += [("status", s) for s in value.get("statuses") or []]
            if value.get("errors"):
                out.append(("change", "messages.errors"))
    return out


def kind_and_raw(item: Inbound | Status | Change) -> tuple[str, Any]:
    if isinstance(item, Inbound):
        return ("inbound", item.message)
    if isinstance(item, Status):
        return ("status", item.raw)
    return ("change", item.field)


def test_the_fixture_set_is_complete() -> None:
    assert len(ALL) == 74


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_pywa_payload_splits_into_what_it_carries(key: str) -> None:
    payload = ALL[key]
    original = copy.deepcopy(payload)
    items = split_delivery(payload)
    assert [kind_and_raw(i) for i in items] == expected_items(original)
    assert payload == original, "split must not modify the delivery"


@pytest.mark.parametrize(
    "key",
    sorted(k for k, p in ALL.items() if any(kind == "inbound" for kind, _ in expected_items(p))),
)
def test_messages_become_inbound_with_customer_and_conversation(key: str) -> None:
    payload = ALL[key]
    [entry] = payload["entry"]
    [change] = entry["changes"]
    value = change["value"]
    [msg] = value["messages"]
    [item] = [i for i in split_delivery(payload) if isinstance(i, Inbound)]
    phone = value["metadata"]["phone_number_id"]
    assert item.customer == msg["from"]
    assert item.phone_number_id == phone
    assert item.display_phone_number == value["metadata"]["display_phone_number"]
    assert item.conversation_id == f"{phone}.{msg['from']}"
    assert item.wamid == msg["id"]
    assert item.type == msg["type"]
    assert item.timestamp == msg["timestamp"]
    assert item.waba_id == entry["id"]
    assert item.message == msg
    matching = [c for c in value.get("contacts") or [] if c["wa_id"] == msg["from"]]
    if matching:
        assert item.contact == matching[0]
        assert item.customer_name == matching[0]["profile"]["name"]


def test_text_message_keeps_the_raw_dict_and_customer_name() -> None:
    payload = pywa.payload("message:text")
    value = payload["entry"][0]["changes"][0]["value"]
    [item] = split_delivery(payload)
    assert isinstance(item, Inbound)
    assert item.message == value["messages"][0]
    assert item.customer_name == value["contacts"][0]["profile"]["name"]
    assert item.contact == value["contacts"][0]


@pytest.mark.parametrize("key", sorted(k for k in ALL if k.startswith("message_status:")))
def test_statuses_become_status_items(key: str) -> None:
    payload = ALL[key]
    value = payload["entry"][0]["changes"][0]["value"]
    [raw] = value["statuses"]
    [item] = split_delivery(payload)
    assert isinstance(item, Status)
    assert item.wamid == raw["id"]
    assert item.status == raw["status"]
    assert item.recipient_id == raw["recipient_id"]
    assert item.timestamp == raw["timestamp"]
    assert item.raw == raw
    assert item.conversation_id == f"{value['metadata']['phone_number_id']}.{raw['recipient_id']}"


def test_failed_status_keeps_its_errors() -> None:
    payload = pywa.payload("message_status:failed")
    [item] = split_delivery(payload)
    assert isinstance(item, Status)
    assert item.status == "failed"
    assert item.raw["errors"] == payload["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"]


@pytest.mark.parametrize(
    ("prefix", "field"),
    [
        ("call_connect:", "calls"),
        ("call_status:", "calls"),
        ("call_terminate:", "calls"),
        ("account_update:", "account_update"),
        ("template_status_update:", "message_template_status_update"),
        ("template_category_update:", "template_category_update"),
        ("template_quality_update:", "message_template_quality_update"),
        ("template_components_update:", "message_template_components_update"),
        ("outgoing_message:", "smb_message_echoes"),
        ("user_marketing_preferences:", "user_preferences"),
    ],
)
def test_other_fields_become_changes_with_the_whole_change(prefix: str, field: str) -> None:
    keys = [k for k in ALL if k.startswith(prefix)]
    assert keys
    for key in keys:
        payload = ALL[key]
        [item] = split_delivery(payload)
        assert isinstance(item, Change), key
        assert item.field == field
        assert item.waba_id == payload["entry"][0]["id"]
        assert item.value == payload["entry"][0]["changes"][0]
        assert len(item.fingerprint) == 64


def test_call_status_is_not_mistaken_for_a_message_status() -> None:
    # field "calls" carries a "statuses" array too: it is a call event, not a delivery status.
    items = split_delivery(pywa.payload("call_status:call_status"))
    assert [type(i) for i in items] == [Change]


def test_value_level_errors_become_a_change_next_to_the_message() -> None:
    payload = pywa.payload("message:interactive_message_with_err")
    value = payload["entry"][0]["changes"][0]["value"]
    items = split_delivery(payload)
    assert [type(i) for i in items] == [Inbound, Change]
    assert items[0].message == value["messages"][0]
    assert items[1].field == "messages.errors"
    assert items[1].value["errors"] == value["errors"]


def _message(base: str, wamid: str, customer: str) -> dict[str, Any]:
    msg = pywa.message(base)
    msg["id"], msg["from"] = wamid, customer
    return msg


def _status(base: str, wamid: str, customer: str) -> dict[str, Any]:
    st = pywa.status(base)
    st["id"], st["recipient_id"] = wamid, customer
    return st


def test_batched_delivery_keeps_meta_order() -> None:
    kinds = ["message:text", "message:image", "message:reaction", "message:order"]
    statuses = ["message_status:sent", "message_status:delivered", "message_status:read"]
    entries = []
    expected: list[tuple[str, str, str]] = []  # (kind, waba, wamid)
    for e in range(2):
        waba = f"waba-{e}"
        changes = []
        for c in range(2):
            phone = f"phone-{e}-{c}"
            customer = f"3900000{e}{c}"
            messages = [_message(k, f"wamid.m{e}{c}{i}", customer) for i, k in enumerate(kinds)]
            sts = [_status(k, f"wamid.s{e}{c}{i}", customer) for i, k in enumerate(statuses)]
            value = {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550009999", "phone_number_id": phone},
                "contacts": [{"profile": {"name": f"C{e}{c}"}, "wa_id": customer}],
                "messages": messages,
                "statuses": sts,
            }
            changes.append({"field": "messages", "value": value})
            expected += [("inbound", waba, m["id"]) for m in messages]
            expected += [("status", waba, s["id"]) for s in sts]
        entries.append({"id": waba, "changes": changes})
    payload = {"object": "whatsapp_business_account", "entry": entries}

    items = split_delivery(payload)

    got = [
        ("inbound" if isinstance(i, Inbound) else "status", i.waba_id, i.wamid)
        for i in items
        if isinstance(i, Inbound | Status)
    ]
    assert got == expected
    assert len(items) == 2 * 2 * (len(kinds) + len(statuses))
    inbound = [i for i in items if isinstance(i, Inbound)]
    assert {i.customer_name for i in inbound} == {"C00", "C01", "C10", "C11"}
    assert all(i.conversation_id.endswith("." + i.customer) for i in inbound)


def test_batched_delivery_with_mixed_fields_keeps_order() -> None:
    text = pywa.payload("message:text")["entry"][0]
    account = pywa.payload("account_update:account_deleted")["entry"][0]
    sent = pywa.payload("message_status:sent")["entry"][0]
    calls = pywa.payload("call_connect:user_initiated")["entry"][0]
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "A", "changes": [account["changes"][0], text["changes"][0]]},
            {"id": "B", "changes": [sent["changes"][0], calls["changes"][0]]},
        ],
    }
    items = split_delivery(payload)
    assert [(type(i).__name__, i.waba_id) for i in items] == [
        ("Change", "A"),
        ("Inbound", "A"),
        ("Status", "B"),
        ("Change", "B"),
    ]


GARBAGE: list[Any] = [
    {},
    {"entry": "x"},
    {"entry": None},
    {"entry": {"id": "1"}},
    None,
    [],
    "entry",
    42,
    {"entry": [1, "x", None, ["nested"]]},
    {"entry": [{"id": "w", "changes": "abc"}]},
    {"entry": [{"id": "w", "changes": [None, 3, "x"]}]},
    {"entry": [{"id": "w", "changes": [{"field": "messages", "value": "x"}]}]},
    {"entry": [{"id": "w", "changes": [{"field": "messages"}]}]},
    {"entry": [{"id": "w", "changes": [{"value": {}}]}]},
    {"entry": [{"id": "w", "changes": [{"field": "messages", "value": {"messages": [1, {}]}}]}]},
    {"entry": [{"id": "w", "changes": [{"field": "messages", "value": {"statuses": ["x", {}]}}]}]},
    {"entry": [{"id": "w", "changes": [{"field": "messages", "value": {"messages": 5}}]}]},
    {"entry": [{"id": "w", "changes": [{"field": "messages", "value": {"statuses": 5}}]}]},
    {
        "entry": [
            {
                "id": "w",
                "changes": [
                    {"field": "messages", "value": {"metadata": "x", "messages": [{"id": "1"}]}}
                ],
            }
        ]
    },
    {
        "entry": [
            {
                "id": "w",
                "changes": [
                    {
                        "field": "messages",
                        "value": {"contacts": {"a": 1}, "messages": [{"id": "1", "from": "2"}]},
                    }
                ],
            }
        ]
    },
    {
        "entry": [
            {
                "id": "w",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "contacts": [{"wa_id": "2", "profile": "x"}],
                            "messages": [{"id": "1", "from": "2"}],
                        },
                    }
                ],
            }
        ]
    },
]


@pytest.mark.parametrize("payload", GARBAGE, ids=[repr(g)[:60] for g in GARBAGE])
def test_garbage_becomes_changes_never_exceptions(payload: Any) -> None:
    items = split_delivery(copy.deepcopy(payload))
    assert items, "nothing may be dropped"
    assert all(isinstance(i, Change) for i in items)
    for item in items:
        assert len(item.fingerprint) == 64  # recordable: the value encodes as JSON


def test_an_entry_without_changes_is_not_an_error() -> None:
    assert split_delivery({"entry": [{"id": "w", "changes": None}, {"id": "v"}]}) == []


def test_unrecognised_list_entries_are_kept_next_to_valid_ones() -> None:
    valid = pywa.payload("message:text")["entry"][0]
    items = split_delivery({"entry": ["junk", valid, 7]})
    assert [type(i) for i in items] == [Change, Inbound, Change]
    assert [items[0].value, items[2].value] == ["junk", 7]


def test_messages_without_id_are_kept_as_changes() -> None:
    good = pywa.message("message:text")
    payload = pywa.payload("message:text")
    payload["entry"][0]["changes"][0]["value"]["messages"] = [{"type": "text"}, good, "junk"]
    items = split_delivery(payload)
    assert [type(i) for i in items] == [Change, Inbound, Change]
    assert items[0].field == "messages.unrecognized"
    assert items[0].value == {"type": "text"}
    assert items[1].message == good
