"""Matching: whole words and phrases in any case and accent, regexes with named groups,
buttons, message kinds, alternatives, order and priority, languages."""

from __future__ import annotations

import textwrap

import pytest

from shared.bot import BotState, Contact, SetAttribute, Turn, load, respond
from shared.bot.loader import Bot

NOW = 1_800_000_000.0


def make(text: str) -> Bot:
    return load(textwrap.dedent(text))


def answer(bot: Bot, text: str = "", contact: Contact | None = None, **turn: str) -> str:
    outcome = respond(
        bot, BotState(), Turn(text=text, timestamp=NOW, **turn), contact or Contact(), NOW
    )
    return outcome.handled_by


WORDS = make(
    """
    rules:
      - id: hours
        match: {any: ["orari", "opening hours", "qual è l'orario"]}
        reply: "hours"
      - id: cafe
        match: {any: ["café", "thumbs 👍"]}
        reply: "cafe"
      - id: hi
        match: {any: [hi]}
        reply: "hi"
    """
)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Orari?", "rule:hours"),
        ("ORARI", "rule:hours"),
        ("what are your opening   hours, please", "rule:hours"),
        ("Opening, hours!", "rule:hours"),
        ("qual e l orario", "rule:hours"),
        ("Qual È L'ORARIO?", "rule:hours"),
        ("un cafe per favore", "rule:cafe"),
        ("CAFÉ", "rule:cafe"),
        ("thumbs 👍🏽", "rule:cafe"),
        ("hi", "rule:hi"),
        ("Hi!", "rule:hi"),
    ],
)
def test_any_matches_whole_words_in_any_case_and_accent(text: str, rule: str) -> None:
    assert answer(WORDS, text) == rule


@pytest.mark.parametrize(
    "text", ["orario", "this", "chi", "hours opening", "opening", "cafeteria", ""]
)
def test_any_does_not_match_parts_of_words_or_partial_phrases(text: str) -> None:
    assert answer(WORDS, text) == ""


def test_the_first_rule_in_order_wins_whatever_word_comes_first() -> None:
    assert answer(WORDS, "hi, opening hours?") == "rule:hours"


def test_regex_is_searched_ignoring_case_with_named_groups() -> None:
    bot = make(
        """
        rules:
          - id: price
            match: {regex: "\\\\bprice of (?P<item>\\\\w+)"}
            reply: "Ask in the shop for the price of {{match.item}}."
        """
    )
    outcome = respond(bot, BotState(), Turn(text="What's the PRICE OF Bread?"), Contact(), NOW)
    assert outcome.replies == [
        {"type": "text", "text": {"body": "Ask in the shop for the price of Bread."}}
    ]
    assert answer(bot, "priceless of bread") == ""


def test_regexes_search_only_the_start_of_a_long_message() -> None:
    bot = make(
        """
        rules:
          - id: code
            match: {regex: "CODE-\\\\d+"}
            reply: "code"
        """
    )
    assert answer(bot, "x" * 400 + " CODE-12") == "rule:code"
    assert answer(bot, "x" * 600 + " CODE-12") == ""


def test_button_and_list_replies_match_by_id() -> None:
    bot = make(
        """
        rules:
          - id: support
            match: {button: [support, help_row]}
            reply: "support"
        """
    )
    assert answer(bot, "Support", button_id="support", kind="button") == "rule:support"
    assert answer(bot, "Help", button_id="help_row", kind="list") == "rule:support"
    assert answer(bot, "support") == ""
    assert answer(bot, "x", button_id="sales", kind="button") == ""


def test_message_kinds_match_whatever_their_text() -> None:
    bot = make(
        """
        rules:
          - id: where
            match: {kind: location}
            reply: "thanks for the location"
          - id: media
            match: {kind: [image, document]}
            reply: "thanks for the file"
          - id: voice
            match: {kind: voice}
            reply: "voice"
        """
    )
    assert answer(bot, kind="location") == "rule:where"
    assert answer(bot, "my receipt", kind="image") == "rule:media"
    assert answer(bot, kind="document") == "rule:media"
    assert answer(bot, "anything said", kind="voice") == "rule:voice"
    assert answer(bot, "location") == ""


def test_a_voice_notes_transcript_and_a_caption_count_as_text() -> None:
    assert answer(WORDS, "what are the opening hours", kind="voice") == "rule:hours"
    assert answer(WORDS, "orari?", kind="image") == "rule:hours"


def test_several_kinds_in_one_match_are_alternatives() -> None:
    bot = make(
        """
        rules:
          - id: support
            match: {any: [help], regex: "^assist", button: support, kind: sticker}
            reply: "support"
        """
    )
    for turn in (
        {"text": "help me"},
        {"text": "assistance"},
        {"button_id": "support"},
        {"kind": "sticker"},
    ):
        assert answer(bot, **turn) == "rule:support", turn
    assert answer(bot, "hello") == ""


def test_priority_goes_first_then_the_written_order() -> None:
    bot = make(
        """
        rules:
          - id: general
            match: {any: [order]}
            reply: "general"
          - id: late
            match: {any: ["late order"]}
            reply: "late"
            priority: 10
          - id: also_general
            match: {regex: "order"}
            reply: "regex"
        """
    )
    assert answer(bot, "my late order") == "rule:late"
    assert answer(bot, "my order") == "rule:general"


def test_a_regex_rule_before_a_word_rule_wins() -> None:
    bot = make(
        """
        rules:
          - id: code
            match: {regex: "A-\\\\d+"}
            reply: "code"
          - id: word
            match: {any: [order]}
            reply: "word"
        """
    )
    assert answer(bot, "order A-12") == "rule:code"
    assert answer(bot, "order") == "rule:word"


LANGUAGES = make(
    """
    language: en
    rules:
      - id: only_it
        match: {any: [sconto]}
        languages: [it]
        reply: "sconto"
      - id: greeting
        match:
          any:
            en: [hi, hello, menu]
            it: [ciao, menu]
        reply: {en: "Hi!", it: "Ciao!"}
    """
)


def test_a_rule_for_some_languages_only_runs_for_them() -> None:
    italian = Contact(attributes={"language": "it"})
    assert answer(LANGUAGES, "sconto", italian) == "rule:only_it"
    assert answer(LANGUAGES, "sconto", Contact(attributes={"language": "it-CH"})) == "rule:only_it"
    assert answer(LANGUAGES, "sconto") == ""


def test_a_keyword_listed_under_a_language_sets_a_new_contacts_language() -> None:
    outcome = respond(LANGUAGES, BotState(), Turn(text="Ciao!"), Contact(), NOW)
    assert SetAttribute("language", "it") in outcome.actions
    assert outcome.replies[0]["text"]["body"] == "Ciao!"
    assert outcome.language == "it"


def test_the_language_is_not_changed_when_known_or_when_the_default() -> None:
    english = respond(LANGUAGES, BotState(), Turn(text="hello"), Contact(), NOW)
    assert english.actions == [] and english.replies[0]["text"]["body"] == "Hi!"
    # "menu" is listed under both: the definition's language counts.
    assert respond(LANGUAGES, BotState(), Turn(text="menu"), Contact(), NOW).actions == []
    known = Contact(attributes={"language": "en"})
    outcome = respond(LANGUAGES, BotState(), Turn(text="ciao"), known, NOW)
    assert outcome.actions == [] and outcome.replies[0]["text"]["body"] == "Hi!"


def test_a_regex_skipped_for_its_missing_literal_still_matches_any_case() -> None:
    bot = make(
        """
        rules:
          - id: price
            match: {regex: "price of (?P<item>\\\\w+)"}
            reply: "{{match.item}}"
        """
    )
    assert answer(bot, "PRICE OF cake") == "rule:price"
    assert answer(bot, "Qual è il price of torta?") == "rule:price"
    assert answer(bot, "the cost of cake") == ""


def test_a_long_s_still_counts_as_an_s_for_a_regex() -> None:
    bot = make(
        """
        rules:
          - id: cost
            match: {regex: "cost of"}
            reply: "cost"
        """
    )
    assert answer(bot, "the co\u017ft of cake") == "rule:cost"  # re.IGNORECASE: a long s is an s
