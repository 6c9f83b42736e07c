"""Template parameters checked and filled before Meta sees them (shared/meta/templates.py)."""

from __future__ import annotations

import pytest

from shared.meta.templates import MissingVariables, check, fill, render, resolve, slots

POSITIONAL = {
    "name": "order_update",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
        {"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships on {{3}}."},
        {"type": "FOOTER", "text": "Thanks"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Stop"},
                {"type": "URL", "text": "Track", "url": "https://x.example/t/{{1}}"},
            ],
        },
    ],
}
NAMED = {
    "name": "welcome",
    "parameter_format": "NAMED",
    "components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hello {{first_name}}, use {{code}} today, {{first_name}}!"},
        {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SAVE10"}]},
    ],
}


def text(value: str, name: str | None = None) -> dict[str, str]:
    p = {"type": "text", "text": value}
    if name:
        p["parameter_name"] = name
    return p


def good_positional() -> list[dict]:
    return [
        {"type": "header", "parameters": [text("A1")]},
        {"type": "body", "parameters": [text("Ann"), text("A1"), text("Monday")]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A1")]},
    ]


def good_named() -> list[dict]:
    return [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://i/x.jpg"}}]},
        {"type": "body", "parameters": [text("SAVE", "code"), text("Ann", "first_name")]},
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": 0,
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE"}],
        },
    ]


def test_slots_follow_the_components() -> None:
    assert [(s.component, s.name, s.kind) for s in slots(POSITIONAL)] == [
        ("header", "1", "text"),
        ("body", "1", "text"),
        ("body", "2", "text"),
        ("body", "3", "text"),
        ("button", "1", "text"),
    ]
    # A name repeated in the text is one parameter.
    assert [s.name for s in slots(NAMED) if s.component == "body"] == ["first_name", "code"]


def test_a_matching_send_passes() -> None:
    assert check(POSITIONAL, good_positional()) == []
    assert check(NAMED, good_named()) == []


def test_a_template_without_parameters_takes_none() -> None:
    hello = {"name": "hello_world", "components": [{"type": "BODY", "text": "Hello World"}]}
    assert check(hello, None) == []
    problems = check(hello, [{"type": "body", "parameters": [text("x")]}])
    assert [p.path for p in problems] == ["template.components[0].parameters"]


def test_a_missing_positional_parameter_is_named() -> None:
    components = good_positional()
    components[1]["parameters"] = components[1]["parameters"][:2]
    [problem] = check(POSITIONAL, components)
    assert problem.path == "template.components[1].parameters"
    assert "{{3}} is missing" in problem.message


def test_a_missing_component_is_named() -> None:
    [problem] = check(POSITIONAL, good_positional()[:2])
    assert "button 1" in problem.message and "missing" in problem.message


def test_an_empty_parameter_is_refused() -> None:
    components = good_positional()
    components[1]["parameters"][0] = text("  ")
    [problem] = check(POSITIONAL, components)
    assert problem.path == "template.components[1].parameters[0].text"


def test_named_parameters_need_their_names() -> None:
    components = good_named()
    components[1]["parameters"] = [text("SAVE"), text("Ann")]
    problems = check(NAMED, components)
    assert {p.path for p in problems} == {
        "template.components[1].parameters[0].parameter_name",
        "template.components[1].parameters[1].parameter_name",
    }


def test_a_wrong_or_missing_name_is_refused() -> None:
    components = good_named()
    components[1]["parameters"] = [text("SAVE", "coupon"), text("Ann", "first_name")]
    messages = [p.message for p in check(NAMED, components)]
    assert "the template has no parameter 'coupon'" in messages
    assert "body parameter {{code}} is missing" in messages


def test_the_header_media_type_is_checked() -> None:
    components = good_named()
    components[0]["parameters"] = [{"type": "video", "video": {"link": "https://v"}}]
    [problem] = check(NAMED, components)
    assert problem.path == "template.components[0].parameters[0].type"
    components[0]["parameters"] = [{"type": "image", "image": {}}]
    [problem] = check(NAMED, components)
    assert "id" in problem.message


def test_the_button_sub_type_is_checked() -> None:
    components = good_positional()
    components[2]["sub_type"] = "quick_reply"
    [problem] = check(POSITIONAL, components)
    assert problem.path == "template.components[2].sub_type"


def test_fill_builds_what_check_accepts() -> None:
    variables = {"header.1": "A1", "1": "{{contact.name}}", "2": "A1", "3": "Monday"}
    variables["button.1"] = "A1"
    components = fill(POSITIONAL, variables, {"name": "Ann"})
    assert check(POSITIONAL, components) == []
    assert components[1]["parameters"][0] == {"type": "text", "text": "Ann"}
    named = fill(
        NAMED, {"header": "https://i/x.jpg", "first_name": "Ann", "code": "S", "button.0": "S"}
    )
    assert check(NAMED, named) == []
    assert named[1]["parameters"][0] == {
        "type": "text",
        "text": "Ann",
        "parameter_name": "first_name",
    }


def test_fill_names_every_missing_variable_and_never_sends_an_empty_one() -> None:
    with pytest.raises(MissingVariables) as caught:
        # The contact has no name: the reference resolves to nothing, which is missing too.
        fill(POSITIONAL, {"header.1": "A1", "1": "{{contact.name}}", "3": ""}, {})
    assert caught.value.names == ["1", "2", "3", "button.1"]


def test_contact_references() -> None:
    contact = {"name": "Ann", "wa_id": "39", "attributes": {"city": "Rome"}}
    assert resolve("{{contact.name}} of {{contact.attributes.city}}", contact) == "Ann of Rome"
    assert resolve("{{ contact.city }}/{{contact.wa_id}}", contact) == "Rome/39"
    assert resolve("{{contact.nothing}}", contact) == ""


def test_render_gives_the_text_the_customer_reads() -> None:
    assert render(POSITIONAL, good_positional()) == "Hi Ann, your order A1 ships on Monday."
    assert render(NAMED, good_named()) == "Hello Ann, use SAVE today, Ann!"
