"""Regexes that could backtrack catastrophically are refused; the usual ones are not, and
what is accepted stays fast on hostile text."""

from __future__ import annotations

import time

import pytest

from shared.bot.safe_regex import MAX_PATTERN, UnsafePattern, compile_safe

UNSAFE = [
    r"(a+)+b",
    r"(a*)*",
    r"(\w+\s?)+$",
    r"([a-z]+)*$",
    r"(x+x+)+y",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(.*a){12}",
    r"(?:a{1,100}){1,100}",
    r"(a|a)*b",
    r"(a|ab)+c",
    r"(\w|\d\d)+!",
    r"(?:x|x?)+y",
    r"(a|)+",
    r"\d+\d+",
    r".*x.*y",
    r"\s*\s*x",
    r"(?=(a+)+b)",
    r"(?P<name>a+)+",
]

SAFE = [
    r"^[A-Z]-\d+$",
    r"\bprice of (?P<item>\w+)",
    r"(\d{1,3},)+",
    r"(\s*,\s*\w+)*",
    r"\w+\s+\w+",
    r"^\w+@\w+\.\w+$",
    r"(ab?)+",
    r"ciao|hello|hi",
    r".*",
    r"\d{5}",
    r"(?:\+39)?\s?3\d{2}\s?\d{6,7}",
    r"(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})",
    r"(a|b)+",
    r"^(yes|no)$",
    r"(ab|ac)+",  # re factors it into a(b|c) itself
    r"(\d|\w)+z",  # and this into one character class
    r"[a-zàèéìòù]+",
]

HOSTILE = ["a" * 500 + "!", "1" * 500 + "x", " " * 500 + "x", "ab" * 250 + "!", "a," * 250]


@pytest.mark.parametrize("pattern", UNSAFE)
def test_patterns_that_could_backtrack_catastrophically_are_refused(pattern: str) -> None:
    with pytest.raises(UnsafePattern, match="catastrophically"):
        compile_safe(pattern)


@pytest.mark.parametrize("pattern", SAFE)
def test_usual_patterns_are_accepted_and_fast_on_hostile_text(pattern: str) -> None:
    compiled = compile_safe(pattern)
    started = time.process_time()
    for text in HOSTILE:
        compiled.search(text)
    assert time.process_time() - started < 0.25


def test_an_unsafe_pattern_really_is_slow() -> None:
    # What the check protects from: (a+)+b on 24 a's already takes a noticeable time.
    import re

    started = time.process_time()
    re.search(r"(a+)+b", "a" * 22)
    assert time.process_time() - started > 0.05


def test_compiled_patterns_ignore_case_and_bad_ones_say_why() -> None:
    assert compile_safe(r"^[A-Z]-\d+$").search("a-12")
    with pytest.raises(UnsafePattern, match="does not compile"):
        compile_safe("(")
    with pytest.raises(UnsafePattern, match="longer than"):
        compile_safe("a" * (MAX_PATTERN + 1))


def test_the_required_literal_of_a_pattern() -> None:
    from shared.bot.safe_regex import required_literal

    assert required_literal(r"\bPrice of (?P<item>\w+)") == "price of "
    assert required_literal(r"(?P<x>order) #(\d+)") == "order #"
    assert required_literal(r"(?:foo)?bar") == "bar"
    assert required_literal(r"cancel|annulla") == ""  # either: nothing required
    assert required_literal(r"^[A-Z]-\d+$") == ""
    assert required_literal(r"a\d") == ""  # one character is not worth it


def test_the_prefilter_never_hides_a_case_insensitive_match() -> None:
    import re
    import sys

    from shared.bot.safe_regex import prefilter_form

    letters = re.compile(r"[a-z0-9]", re.IGNORECASE)
    for code in range(128, sys.maxunicode + 1):
        char = chr(code)
        if letters.fullmatch(char):
            wanted = [
                c for c in "abcdefghijklmnopqrstuvwxyz" if re.fullmatch(c, char, re.IGNORECASE)
            ]
            assert all(c in prefilter_form(char) for c in wanted), hex(code)
    assert "in" in prefilter_form("İn")
    assert "ok" in prefilter_form("O\u212a")  # the Kelvin sign is a k to re.IGNORECASE
