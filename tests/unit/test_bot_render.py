"""Replies as Cloud API bodies: variables (missing ones render empty, never as braces),
languages, buttons, lists, link buttons, templates, Meta's limits at render time."""

from __future__ import annotations

import textwrap
from typing import Any

from shared.bot import BotState, Contact, Turn, load, respond
from shared.bot.loader import Bot

NOW = 1_800_000_000.0


def make(text: str) -> Bot:
    return load(textwrap.dedent(text))


def replies(bot: Bot, text: str, contact: Contact | None = None) -> list[dict[str, Any]]:
    return respond(
        bot, BotState(), Turn(text=text, timestamp=NOW), contact or Contact(), NOW
    ).replies


def bodies(bot: Bot, text: str, contact: Contact | None = None) -> list[str]:
    return [r["text"]["body"] for r in replies(bot, text, contact)]


VARIABLES = make(
    """
    language: en
    rules:
      - id: hi
        match: {any: [hi]}
        reply: "Hi {{contact.name}}, from {{ contact.attributes.city }}!"
      - id: default
        match: {any: [hey]}
        reply: "Hey {{contact.name|there}}!"
      - id: said
        match: {regex: "my name is (?P<name>\\\\w+)(?: from (?P<city>\\\\w+))?"}
        reply: "Nice to meet you {{match.name}} {{match.city}}."
      - id: only
        match: {any: [empty]}
        reply: ["{{contact.attributes.nothing}}", "second"]
    """
)


def test_variables_of_the_contact() -> None:
    contact = Contact(name="Mario", attributes={"city": "Bologna"})
    assert bodies(VARIABLES, "hi", contact) == ["Hi Mario, from Bologna!"]


def test_a_missing_variable_renders_empty_or_as_its_default() -> None:
    assert bodies(VARIABLES, "hi") == ["Hi , from !"]
    assert bodies(VARIABLES, "hey") == ["Hey there!"]
    assert bodies(VARIABLES, "hey", Contact(name="Ann")) == ["Hey Ann!"]


def test_match_groups_and_an_unmatched_group() -> None:
    assert bodies(VARIABLES, "my name is Ann") == ["Nice to meet you Ann ."]
    assert bodies(VARIABLES, "my name is Ann from Rome") == ["Nice to meet you Ann Rome."]


def test_a_message_that_renders_empty_is_not_sent() -> None:
    assert bodies(VARIABLES, "empty") == ["second"]


def test_values_are_not_expanded_again() -> None:
    contact = Contact(name="{{contact.attributes.secret}}", attributes={"secret": "s3cr3t"})
    assert bodies(VARIABLES, "hey", contact) == ["Hey {{contact.attributes.secret}}!"]


LANGUAGES = make(
    """
    language: it
    rules:
      - id: hi
        match: {any: [hi]}
        reply: {it: "Ciao", en: "Hello", pt: "Olá", pt-br: "Oi"}
      - id: plain
        match: {any: [plain]}
        reply: "Same for all"
    """
)


def test_the_language_is_the_contacts_else_the_definitions() -> None:
    def said(language: str | None) -> str:
        attributes = {"language": language} if language else {}
        return bodies(LANGUAGES, "hi", Contact(attributes=attributes))[0]

    assert said(None) == "Ciao"
    assert said("en") == "Hello"
    assert said("EN") == "Hello"
    assert said("pt_BR") == "Oi"
    assert said("pt-PT") == "Olá"
    assert said("de") == "Ciao"  # not written in German: the definition's language
    assert bodies(LANGUAGES, "plain", Contact(attributes={"language": "en"})) == ["Same for all"]


def test_buttons_are_an_interactive_button_message() -> None:
    bot = make(
        """
        rules:
          - id: menu
            match: {any: [menu]}
            reply:
              buttons:
                header: "Menu"
                body: {en: "What do you need, {{contact.name}}?", it: "Cosa ti serve?"}
                footer: "Tap one"
                options:
                  - {id: support, title: {en: Support, it: Assistenza}}
                  - {id: sales, title: "Sales for {{contact.name}}"}
        """
    )
    contact = Contact(name="Massimiliano Giuseppe", attributes={"language": "en"})
    assert replies(bot, "menu", contact) == [
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "header": {"type": "text", "text": "Menu"},
                "body": {"text": "What do you need, Massimiliano Giuseppe?"},
                "footer": {"text": "Tap one"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "support", "title": "Support"}},
                        # A title made longer than 20 by a variable is cut to fit.
                        {
                            "type": "reply",
                            "reply": {"id": "sales", "title": "Sales for Massimili…"},
                        },
                    ]
                },
            },
        }
    ]
    italian = replies(bot, "menu", Contact(attributes={"language": "it"}))[0]["interactive"]
    assert italian["action"]["buttons"][0]["reply"]["title"] == "Assistenza"
    assert italian["body"]["text"] == "Cosa ti serve?"


def test_a_list_and_a_link_button() -> None:
    bot = make(
        """
        rules:
          - id: pick
            match: {any: [pick]}
            reply:
              list:
                body: "Choose a topic"
                button: "Topics"
                sections:
                  - title: "Orders"
                    rows: [{id: late, title: "Late order", description: "Where is it?"}]
                  - title: "Shop"
                    rows: [{id: hours, title: "Hours"}]
          - id: map
            match: {any: [map]}
            reply:
              cta_url:
                body: "Find us"
                text: "Open the map"
                url: "https://example.com/map?city={{contact.attributes.city}}"
        """
    )
    assert replies(bot, "pick") == [
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Choose a topic"},
                "action": {
                    "button": "Topics",
                    "sections": [
                        {
                            "rows": [
                                {"id": "late", "title": "Late order", "description": "Where is it?"}
                            ],
                            "title": "Orders",
                        },
                        {"rows": [{"id": "hours", "title": "Hours"}], "title": "Shop"},
                    ],
                },
            },
        }
    ]
    link = replies(bot, "map", Contact(attributes={"city": "Bologna"}))[0]["interactive"]
    assert link == {
        "type": "cta_url",
        "body": {"text": "Find us"},
        "action": {
            "name": "cta_url",
            "parameters": {
                "display_text": "Open the map",
                "url": "https://example.com/map?city=Bologna",
            },
        },
    }


def test_a_template_reply_with_positional_and_named_parameters() -> None:
    bot = make(
        """
        rules:
          - id: positional
            match: {any: [status]}
            reply: {template: {name: order_status, parameters: ["{{contact.name}}", 3]}}
          - id: named
            match: {any: [named]}
            reply:
              template:
                name: welcome
                language: en_US
                parameters: {first_name: "{{contact.name}}"}
          - id: bare
            match: {any: [bare]}
            reply: {template: {name: hello_world}}
        """
    )
    contact = Contact(name="Ann", attributes={"language": "pt-br"})
    assert replies(bot, "status", contact) == [
        {
            "type": "template",
            "template": {
                "name": "order_status",
                "language": {"code": "pt_BR"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ann"},
                            {"type": "text", "text": "3"},
                        ],
                    }
                ],
            },
        }
    ]
    named = replies(bot, "named")[0]["template"]
    assert named["language"] == {"code": "en_US"}
    # Meta refuses an empty parameter: an unknown name is sent as a dash.
    assert named["components"][0]["parameters"] == [
        {"type": "text", "parameter_name": "first_name", "text": "-"}
    ]
    assert replies(bot, "bare") == [
        {"type": "template", "template": {"name": "hello_world", "language": {"code": "en"}}}
    ]


def test_a_reply_can_be_several_messages() -> None:
    bot = make(
        """
        rules:
          - id: two
            match: {any: [two]}
            reply: ["first", {text: "second"}]
        """
    )
    assert bodies(bot, "two") == ["first", "second"]
