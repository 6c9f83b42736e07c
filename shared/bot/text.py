"""Text as the matcher sees it: case- and accent-insensitive words. Pure.

`words("Qual è l'orario?")` is `("qual", "e", "l", "orario")`: letters lose their accents
and case (NFKD, combining marks dropped, casefolded), punctuation separates words, and a
symbol such as an emoji is a word of its own, so a keyword can be "👍".
"""

from __future__ import annotations

import re
import unicodedata

_TOKEN = re.compile(r"\w+|[^\w\s]")


def fold(text: str) -> str:
    """Lower case with no accents: the form every comparison uses."""
    if text.isascii():
        return text.lower()  # the common case: no decomposition needed
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> tuple[str, ...]:
    """The words of `text`, folded; punctuation is dropped, symbols are kept as words."""
    folded = fold(text)
    return tuple(
        t for t in _TOKEN.findall(folded) if t[0].isalnum() or t[0] == "_" or not _punct(t)
    )


def _punct(token: str) -> bool:
    return unicodedata.category(token)[0] == "P"


def same(a: str, b: str) -> bool:
    """Equal as words: `same("Sì!", "si")`."""
    return words(a) == words(b)
