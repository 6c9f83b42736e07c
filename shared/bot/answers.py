"""Is an answer to a flow's question valid, and what is saved for it. Pure.

Each validation returns the value to save (normalised: a number with a dot for decimals, a
date as YYYY-MM-DD, a choice as its option's id) or None for an answer that gets the
step's `retry`. An answer with no text (a sticker, a location) is never valid, nor one
longer than the step's `max_length`."""

from __future__ import annotations

import re
from datetime import date, timedelta

from shared.bot.model import AskStep, Option, Validator
from shared.bot.runtime_types import Turn
from shared.bot.text import fold, words

_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+$")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DAY_FIRST = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})$")
# Days said in words, in the languages of the phrasebook (folded).
_RELATIVE = {
    "today": 0,
    "oggi": 0,
    "hoy": 0,
    "aujourd hui": 0,
    "heute": 0,
    "hoje": 0,
    "tomorrow": 1,
    "domani": 1,
    "manana": 1,
    "demain": 1,
    "morgen": 1,
    "amanha": 1,
}


def accept(
    step: AskStep, turn: Turn, today: date, pattern: re.Pattern[str] | None = None
) -> str | None:
    """The value to save for `turn` as the answer to `step`, or None."""
    text = turn.text.strip()
    validator = step.validate
    if validator.kind == "choice":
        chosen = _choice(validator.choices, turn, text)
        if chosen is not None:
            return chosen
    if not text or len(text) > step.max_length:
        return None
    match validator.kind:
        case "text":
            return text
        case "number":
            return _number(validator, text)
        case "email":
            return text if _EMAIL.match(text) else None
        case "date":
            return _date(text, today)
        case "regex":
            assert pattern is not None
            return text if pattern.search(text) else None
    return None  # a choice not chosen


def _choice(options: tuple[Option, ...], turn: Turn, text: str) -> str | None:
    """By the button or row chosen, by an option's id or title typed (any case, any accent),
    or by its number in the list (`2` for the second)."""
    if turn.button_id:
        for option in options:
            if option.id == turn.button_id:
                return option.id
    said = words(text)
    if not said:
        return None
    for option in options:
        titles = [words(t.source) for t in option.title.variants.values()]
        if said == words(option.id) or said in titles:
            return option.id
    if len(said) == 1 and said[0].isdigit() and 1 <= int(said[0]) <= len(options):
        return options[int(said[0]) - 1].id
    return None


def _number(validator: Validator, text: str) -> str | None:
    compact = text.replace(" ", "")
    if not _NUMBER.match(compact):
        return None
    value = float(compact.replace(",", "."))
    if validator.integer and not value.is_integer():
        return None
    if validator.minimum is not None and value < validator.minimum:
        return None
    if validator.maximum is not None and value > validator.maximum:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def _date(text: str, today: date) -> str | None:
    """YYYY-MM-DD, or day first (25/12/2026, 25.12.26, 25-12-2026), or today/tomorrow."""
    relative = _RELATIVE.get(" ".join(words(text)))
    if relative is not None:
        return (today + timedelta(days=relative)).isoformat()
    compact = text.replace(" ", "")
    iso = _ISO.match(compact)
    if iso:
        year, month, day = int(iso[1]), int(iso[2]), int(iso[3])
    else:
        found = _DAY_FIRST.match(compact)
        if not found:
            return None
        day, month, year = int(found[1]), int(found[2]), int(found[3])
        year += 2000 if year < 100 else 0
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def same_value(value: str, wanted: tuple[str, ...]) -> bool:
    return fold(value) in wanted
