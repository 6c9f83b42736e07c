"""split_delivery: every item of a delivery, raw and in Meta's order; nothing raises."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.dedup.split import Change, Echo, Inbound, Preference, Status, split_delivery
from tests.support import pywa

ALL = pywa.payloads()


def expected_items(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the delivery carries, walked independently: (kind, raw) in Meta's order."""
    out: list[tuple[str, Any]] = []
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if change["field"] == "smb_message_echoes":
                out += [("echo", m) for m in value["message_echoes"]]
                continue
            if change["field"] == "user_preferences":
                out += [("preference", p) for p in value["user_preferences"]]
                continue
            if change["field"] != "messages":
                out.append(("change", change["field"]))
                continue
            out += [("inbound", m) for m in value.get("messages") or []]
            out += [("status", s) for s in value.get("statuses") or []]
            if value.get("errors"):
                out.append(("change", "messages.errors"))
    return out


def kind_and_raw(item: Inbound | Status | Echo | Change | Preference) -> tuple[str, Any]:
    if isinstance(item, Inbound):
        return ("inbound", item.message)
    if isinstance(item, Echo):
        return ("echo", item.message)
    if isinstance(item, Preference):
        return ("preference", item.raw)
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


@pytest.mark.parametrize("kind", ["text", "delete", "edit"])
def test_phone_app_echoes_become_echoes_to_their_recipient(kind: str) -> None:
    payload = pywa.payload(f"outgoing_message:{kind}")
    value = payload["entry"][0]["changes"][0]["value"]
    [raw] = value["message_echoes"]
    [item] = split_delivery(payload)
    assert isinstance(item, Echo)
    assert (item.wamid, item.customer, item.type) == (raw["id"], raw["to"], raw["type"])
    assert item.phone_number_id == value["metadata"]["phone_number_id"]
    assert item.conversation_id == f"{item.phone_number_id}.{raw['to']}"
    assert item.message == raw


def test_an_echo_without_a_recipient_or_an_id_is_kept_as_a_change() -> None:
    payload = pywa.payload("outgoing_message:text")
    [echo] = payload["entry"][0]["changes"][0]["value"]["message_echoes"]
    del echo["to"], echo["to_user_id"]
    [item] = split_delivery(payload)
    assert isinstance(item, Change) and item.field == "smb_message_echoes"
    payload["entry"][0]["changes"][0]["value"]["message_echoes"] = "not a list"
    [item] = split_delivery(payload)
    assert isinstance(item, Change) and item.field == "smb_message_echoes"


@pytest.mark.parametrize(("key", "value"), [("resume", "resume"), ("signup", "signup")])
def test_user_preferences_become_preference_items(key: str, value: str) -> None:
    payload = pywa.payload(f"user_marketing_preferences:{key}")
    raw = payload["entry"][0]["changes"][0]["value"]["user_preferences"][0]
    [item] = split_delivery(payload)
    assert isinstance(item, Preference)
    assert (item.waba_id, item.phone_number_id) == ("102290129340398", "106540352242922")
    # The preference's own wa_id, not the contact's beside it (another customer there).
    assert (item.wa_id, item.user_id) == (raw["wa_id"], "")
    assert (item.value, item.category, item.timestamp) == (
        value,
        "marketing_messages",
        "1731705721",
    )
    assert item.raw == raw


def test_a_stop_names_its_contacts_user_id_and_bad_entries_stay_changes() -> None:
    payload = pywa.payload("user_marketing_preferences:resume")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = "16505551234"
    value["user_preferences"][0]["value"] = "stop"
    value["user_preferences"].append({"detail": "no id", "value": "stop"})
    first, second = split_delivery(payload)
    assert isinstance(first, Preference)
    assert (first.value, first.user_id) == ("stop", "US.13491208655302741918")
    assert isinstance(second, Change)
    assert second.field == "user_preferences.unrecognized"


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


def _delivery(messages: Any = None, statuses: Any = None, waba: Any = "200") -> dict[str, Any]:
    value: dict[str, Any] = {"metadata": {"phone_number_id": "100"}}
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"entry": [{"id": waba, "changes": [{"field": "messages", "value": value}]}]}


def _text(wamid: str, sender: str = "3912345") -> dict[str, Any]:
    return {"id": wamid, "from": sender, "type": "text", "text": {"body": "hi"}}


@pytest.mark.parametrize(
    "payload",
    [
        {"entry": [{"id": "200", "changes": 5}]},  # changes not a list
        {"entry": [{"id": "200", "changes": "x"}]},
        {"entry": [{"id": {"deep": 1}, "changes": [{"field": {"x": 1}, "value": 1}]}]},
        _delivery(messages={"not": "a list"}),
        _delivery(statuses=7),
    ],
)
def test_odd_shapes_are_kept_whole_as_changes(payload: Any) -> None:
    items = split_delivery(payload)
    assert items and all(isinstance(i, Change) for i in items)
    assert all(len(i.waba_id) <= 100 and len(i.field) <= 100 for i in items)


def test_ids_too_long_or_not_ids_never_name_a_stream_but_are_kept() -> None:
    """A 10 KB wamid or a 300-character sender would overflow a stream name index or a
    routing key: the item is kept as a Change, its neighbours are recorded as usual."""
    good = _text("wamid.good")
    payload = _delivery(
        messages=[_text("w" * 10_000), good, _text("wamid.x", sender="3" * 300)],
        statuses=[{"id": "s" * 10_000, "status": "read"}, {"id": "wamid.ok", "status": "sent"}],
        waba="9" * 500,
    )
    items = split_delivery(payload)
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Change", "Inbound", "Change", "Change", "Status"]
    [inbound] = [i for i in items if isinstance(i, Inbound)]
    assert inbound.message == good and inbound.waba_id == "unknown"
    assert all(len(i.conversation_id) < 255 for i in items if isinstance(i, Inbound | Status))


@pytest.mark.parametrize("bad", ["wamid with space", "wamid.\x00nul", "wamid.\u200bzw", ""])
def test_ids_with_spaces_or_control_characters_are_not_ids(bad: str) -> None:
    [item] = split_delivery(_delivery(messages=[_text(bad)]))
    assert isinstance(item, Change)
