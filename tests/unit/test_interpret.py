"""interpret: what each kind of WhatsApp message means to the conversation (real pywa shapes)."""

from __future__ import annotations

import pytest

from services.conversation.interpret import interpret
from tests.support import pywa


def test_text_is_a_turn_with_its_body() -> None:
    for key in ("message:text", "message:reply", "message:forwarded", "message:referral"):
        msg = pywa.message(key)
        meaning = interpret(msg)
        assert meaning.kind == "turn", key
        assert meaning.answer
        assert meaning.text == msg["text"]["body"]


def test_button_reply_is_a_turn_with_the_title_and_id() -> None:
    msg = pywa.message("callback_button:button")
    reply = msg["interactive"]["button_reply"]
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert reply["title"] in meaning.text
    assert meaning.text.startswith("[button]")
    assert meaning.detail == {"id": reply["id"]}


@pytest.mark.parametrize("key", ["callback_selection:callback", "callback_selection:description"])
def test_list_reply_is_a_turn_with_title_and_description(key: str) -> None:
    msg = pywa.message(key)
    reply = msg["interactive"]["list_reply"]
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert reply["title"] in meaning.text
    if "description" in reply:
        assert reply["description"] in meaning.text
    assert meaning.detail == {"id": reply["id"]}


@pytest.mark.parametrize(
    "key", ["flow_completion:completion", "flow_completion:without_flow_token"]
)
def test_flow_completion_is_a_turn_keeping_the_response(key: str) -> None:
    msg = pywa.message(key)
    nfm = msg["interactive"]["nfm_reply"]
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert nfm["body"] in meaning.text
    assert meaning.detail == {"response_json": nfm["response_json"]}


@pytest.mark.parametrize(
    "key", ["callback_button:quick_reply", "callback_button:quick_reply_without_context"]
)
def test_quick_reply_button_is_a_turn_with_its_text(key: str) -> None:
    msg = pywa.message(key)
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert msg["button"]["text"] in meaning.text
    assert meaning.detail == {"payload": msg["button"]["payload"]}


def test_current_location_has_coordinates() -> None:
    msg = pywa.message("message:current_location")
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert meaning.text.startswith("[location]")
    assert str(msg["location"]["latitude"]) in meaning.text
    assert str(msg["location"]["longitude"]) in meaning.text


def test_chosen_location_has_name_address_and_coordinates() -> None:
    msg = pywa.message("message:chosen_location")
    loc = msg["location"]
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    for part in (loc["name"], loc["address"], str(loc["latitude"]), str(loc["longitude"])):
        assert part in meaning.text


def test_shared_contacts_list_every_name_and_phone() -> None:
    msg = pywa.message("message:contacts")
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert len(msg["contacts"]) > 1
    for contact in msg["contacts"]:
        assert contact["name"]["formatted_name"] in meaning.text
        for phone in contact["phones"]:
            assert phone["phone"] in meaning.text


def test_order_lists_every_item_with_quantity() -> None:
    msg = pywa.message("message:order")
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert meaning.text.startswith("[order]")
    for item in msg["order"]["product_items"]:
        assert f"{item['quantity']} x {item['product_retailer_id']}" in meaning.text


def test_order_note_is_appended_when_present() -> None:
    msg = pywa.message("message:order")
    msg["order"]["text"] = "no onions please"
    assert interpret(msg).text.endswith("no onions please")


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("message:image", "[image]"),
        ("message:media_with_url", "[image]"),
        ("message:video", "[video]"),
        ("message:document", "[document]"),
        ("message:static_sticker", "[sticker]"),
        ("message:animated_sticker", "[sticker]"),
        ("message:audio", "[audio]"),
        ("message:voice", "[voice note]"),
    ],
)
def test_media_is_a_turn_labelled_with_caption_and_filename(key: str, label: str) -> None:
    msg = pywa.message(key)
    media = msg[msg["type"]]
    meaning = interpret(msg)
    assert meaning.kind == "turn"
    assert meaning.text.startswith(label)
    for extra in ("caption", "filename"):
        if media.get(extra):
            assert media[extra] in meaning.text
    assert meaning.detail == {"media_id": media["id"]}


def test_voice_note_and_audio_are_told_apart() -> None:
    assert "voice" not in interpret(pywa.message("message:audio")).text
    assert "voice" in interpret(pywa.message("message:voice")).text


def test_reaction_targets_the_message_with_the_emoji() -> None:
    msg = pywa.message("message:reaction")
    meaning = interpret(msg)
    assert meaning.kind == "reaction"
    assert not meaning.answer
    assert meaning.text == msg["reaction"]["emoji"]
    assert meaning.target == msg["reaction"]["message_id"]


@pytest.mark.parametrize("key", ["message:unreaction_empty", "message:unreaction_no_emoji"])
def test_unreaction_is_a_reaction_with_no_emoji(key: str) -> None:
    msg = pywa.message(key)
    meaning = interpret(msg)
    assert meaning.kind == "reaction"
    assert meaning.text == ""
    assert meaning.target == msg["reaction"]["message_id"]


def test_edit_targets_the_original_with_the_new_text() -> None:
    msg = pywa.message("edited_message:image")
    meaning = interpret(msg)
    assert meaning.kind == "edit"
    assert not meaning.answer
    assert meaning.target == msg["edit"]["original_message_id"]
    assert msg["edit"]["message"]["image"]["caption"] in meaning.text


def test_edit_of_a_text() -> None:
    msg = pywa.message("edited_message:image")
    msg["edit"]["message"] = {"type": "text", "text": {"body": "fixed typo"}}
    assert interpret(msg).text == "fixed typo"


def test_revoke_is_a_delete_of_the_original() -> None:
    msg = pywa.message("deleted_message:revoke")
    meaning = interpret(msg)
    assert meaning.kind == "delete"
    assert not meaning.answer
    assert meaning.target == msg["revoke"]["original_message_id"]


@pytest.mark.parametrize("key", ["system:phone_number_change", "system:identity_change"])
def test_system_message_is_a_notice_with_its_body(key: str) -> None:
    msg = pywa.message(key)
    meaning = interpret(msg)
    assert meaning.kind == "system"
    assert not meaning.answer
    assert meaning.text == msg["system"]["body"]
    assert meaning.detail == msg["system"]


@pytest.mark.parametrize("key", ["message:unsupported", "message:unsupported_with_type"])
def test_unsupported_is_not_answered_and_keeps_the_errors(key: str) -> None:
    msg = pywa.message(key)
    meaning = interpret(msg)
    assert meaning.kind == "unsupported"
    assert not meaning.answer
    assert meaning.detail is not None
    assert meaning.detail["errors"] == msg["errors"]


def test_interactive_without_subtype_is_unsupported() -> None:
    msg = pywa.message("message:interactive_message_with_err")
    assert "interactive" not in msg
    meaning = interpret(msg)
    assert meaning.kind == "unsupported"
    assert not meaning.answer


@pytest.mark.parametrize("key", ["call_permission_update:accept", "call_permission_update:reject"])
def test_unknown_interactive_subtype_is_unsupported(key: str) -> None:
    msg = pywa.message(key)
    meaning = interpret(msg)
    assert meaning.kind == "unsupported"
    assert meaning.detail == {"type": f"interactive.{msg['interactive']['type']}"}


def test_unknown_or_missing_type_is_unsupported_not_a_crash() -> None:
    assert interpret({}).kind == "unsupported"
    meaning = interpret({"type": "hologram"})
    assert meaning.kind == "unsupported"
    assert meaning.detail is not None and meaning.detail["type"] == "hologram"


def test_text_without_body_is_an_empty_turn() -> None:
    meaning = interpret({"type": "text"})
    assert (meaning.kind, meaning.text) == ("turn", "")
