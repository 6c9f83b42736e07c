"""The console's languages: English, the language the pages are written in, and Italian.

One catalogue per language (`it.json`: English text -> its translation), read by both sides:
the server's pages call `t(lang, "Inbox")`, and the page embeds the catalogue for the
scripts' `Console.t("...")` (a JSON data block, which the Content-Security-Policy allows:
it is never run). A text missing from a catalogue shows in English, never as a key; the
tests find every text the pages and scripts ask for and fail on one left out.

Placeholders are `{name}`, filled after the lookup, so a translation can move them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LANGUAGES = {"en": "English", "it": "Italiano"}
DEFAULT = "en"
HERE = Path(__file__).parent


@cache
def catalogue(lang: str) -> dict[str, str]:
    """English text -> this language's (empty for English)."""
    if lang == DEFAULT or lang not in LANGUAGES:
        return {}
    data: dict[str, str] = json.loads((HERE / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def t(lang: str, text: str, **values: object) -> str:
    """`text` in `lang`, its `{placeholders}` filled with `values`."""
    found = catalogue(lang).get(text, text)
    return found.format(**values) if values else found


def best(accept_language: str) -> str:
    """The language to greet a visitor in who is not signed in yet, from their browser's
    Accept-Language (`it-IT,it;q=0.9,en;q=0.8`): the first one we have, else English."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:  # q=0: "not this one"
            ranked.append((-quality, index, tag.strip().lower().split("-")[0]))
    for _, _, lang in sorted(ranked):
        if lang in LANGUAGES:
            return lang
    return DEFAULT


def script_block(lang: str) -> str:
    """The catalogue as a JSON data block for the page's scripts (`<` escaped, so no text
    in it can close the element)."""
    text = json.dumps(catalogue(lang), ensure_ascii=False, sort_keys=True)
    return (
        '<script type="application/json" id="console-i18n">'
        + text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        + "</script>"
    )
