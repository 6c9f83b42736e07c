"""Regexes that cannot backtrack catastrophically. Pure.

Python's `re` has no time limit, so a pattern is checked when the definition is loaded,
and refused when it could take exponential or high-polynomial time on some message:
- a quantifier inside a repeated group whose text could be split between iterations in
  more than one way: `(a+)+`, `(\\w+\\s?)+`, `(a|a)*`; a repeat that is followed in its
  group by something it cannot match, such as `(\\d{1,3},)+`, is accepted;
- alternatives inside a repeat that can begin with the same character: `(ab|ac)+` (write
  `a(b|c)`);
- two unbounded quantifiers in a row that can match the same characters, with only
  characters the first can match between them: `\\d+\\d+`, `.*x.*y`.
The check is conservative (it works on a sample alphabet, and may refuse a pattern that is
in fact safe); what remains is at worst quadratic in the text, which is why rules search
only the first `REGEX_SCAN` characters of a message.
"""

from __future__ import annotations

import re
import re._constants as c  # the parser of `re` itself, so the check sees what `re` compiles
import re._parser as sre
import string
from typing import Any

MAX_PATTERN = 500
_SAMPLE = frozenset(string.printable + "àèéìòùçñüößäÀÉÈ€£°\u00a0·")
_REPEATS = (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT)
_CATEGORIES: dict[Any, Any] = {
    c.CATEGORY_DIGIT: str.isdigit,
    c.CATEGORY_NOT_DIGIT: lambda ch: not ch.isdigit(),
    c.CATEGORY_SPACE: str.isspace,
    c.CATEGORY_NOT_SPACE: lambda ch: not ch.isspace(),
    c.CATEGORY_WORD: lambda ch: ch.isalnum() or ch == "_",
    c.CATEGORY_NOT_WORD: lambda ch: not (ch.isalnum() or ch == "_"),
}
_EMPTY: frozenset[str] = frozenset()


class UnsafePattern(ValueError):
    pass


def compile_safe(pattern: str) -> re.Pattern[str]:
    """The compiled pattern (case-insensitive), or UnsafePattern saying why not."""
    if len(pattern) > MAX_PATTERN:
        raise UnsafePattern(f"longer than {MAX_PATTERN} characters")
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
        parsed = sre.parse(pattern, re.IGNORECASE)
    except re.error as exc:
        raise UnsafePattern(f"does not compile: {exc}") from None
    problem = _sequence(list(parsed), _EMPTY, inside_repeat=False)
    if problem:
        raise UnsafePattern(f"could backtrack catastrophically: {problem}")
    return compiled


def _flat(items: Any) -> list[tuple[Any, Any]]:
    """A sequence with its groups opened, so what follows a group is seen."""
    out: list[tuple[Any, Any]] = []
    for op, av in items:
        if op is c.SUBPATTERN:
            out.extend(_flat(av[3]))
        elif op is c.ATOMIC_GROUP:
            out.extend(_flat(av))
        else:
            out.append((op, av))
    return out


def _sequence(items: list[tuple[Any, Any]], after: frozenset[str], inside_repeat: bool) -> str:
    items = _flat(items)
    for j, (op, av) in enumerate(items):
        rest = items[j + 1 :]
        follow = _first(rest) | (after if _nullable(rest) else _EMPTY)
        if op in _REPEATS:
            lo, hi, body = av
            body_items = _flat(body)
            if inside_repeat and lo != hi and _chars(body_items) & follow:
                return "a quantifier inside a repeated group can split the text in several ways"
            if hi > 1:
                again = _first(body_items) | follow
                problem = _sequence(body_items, again, inside_repeat=True)
            else:
                problem = _sequence(body_items, follow, inside_repeat)
            if problem:
                return problem
            if hi == c.MAXREPEAT and _overlaps_later(items, j):
                return "two unbounded quantifiers in a row can match the same characters"
        elif op is c.BRANCH:
            alternatives = [_flat(alt) for alt in av[1]]
            if inside_repeat and _ambiguous(alternatives):
                return "alternatives inside a repeat can match the same text"
            for alt in alternatives:
                problem = _sequence(alt, follow, inside_repeat)
                if problem:
                    return problem
        elif op is c.GROUPREF_EXISTS:
            for arm in av[1:]:
                if arm is not None:
                    problem = _sequence(list(arm), follow, inside_repeat)
                    if problem:
                        return problem
        elif op in (c.ASSERT, c.ASSERT_NOT):
            problem = _sequence(list(av[1]), _EMPTY, inside_repeat=False)
            if problem:
                return problem
    return ""


def _overlaps_later(items: list[tuple[Any, Any]], j: int) -> bool:
    """Does an unbounded repeat at `j` meet a later one over text it could eat itself?"""
    eats = _chars(_flat(items[j][1][2]))
    for op, av in items[j + 1 :]:
        if op in _REPEATS and av[1] == c.MAXREPEAT and _chars(_flat(av[2])) & eats:
            return True
        if not _nullable([(op, av)]) and not (_chars([(op, av)]) & eats):
            return False  # a character the first cannot take: the split is forced
    return False


def _ambiguous(alternatives: list[list[tuple[Any, Any]]]) -> bool:
    seen: frozenset[str] = _EMPTY
    for alt in alternatives:
        if _nullable(alt):
            return True
        first = _first(alt)
        if first & seen:
            return True
        seen |= first
    return False


def _nullable(items: list[tuple[Any, Any]]) -> bool:
    for op, av in items:
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT, c.GROUPREF):
            continue
        if op in _REPEATS:
            if av[0] == 0 or _nullable(_flat(av[2])):
                continue
            return False
        if op is c.SUBPATTERN:
            if _nullable(_flat(av[3])):
                continue
            return False
        if op is c.ATOMIC_GROUP:
            if _nullable(_flat(av)):
                continue
            return False
        if op is c.BRANCH:
            if any(_nullable(_flat(alt)) for alt in av[1]):
                continue
            return False
        if op is c.GROUPREF_EXISTS:
            if _nullable(list(av[1])) or av[2] is None or _nullable(list(av[2])):
                continue
            return False
        return False
    return True


def _first(items: list[tuple[Any, Any]]) -> frozenset[str]:
    """The characters a match of `items` can begin with (over the sample alphabet)."""
    out: frozenset[str] = _EMPTY
    for op, av in _flat(items):
        out |= _first_of(op, av)
        if not _nullable([(op, av)]):
            break
    return out


def _first_of(op: Any, av: Any) -> frozenset[str]:
    if op in _REPEATS:
        return _first(_flat(av[2]))
    if op is c.BRANCH:
        return frozenset().union(*(_first(_flat(alt)) for alt in av[1]))
    if op is c.GROUPREF_EXISTS:
        arms = [list(a) for a in av[1:] if a is not None]
        return frozenset().union(*(_first(a) for a in arms))
    if op is c.GROUPREF:
        return _SAMPLE  # whatever the group matched
    return _chars([(op, av)])


def _chars(items: list[tuple[Any, Any]]) -> frozenset[str]:
    """Every character `items` can consume anywhere (over the sample alphabet)."""
    out: frozenset[str] = _EMPTY
    for op, av in items:
        if op is c.LITERAL:
            out |= _cased(chr(av))
        elif op is c.NOT_LITERAL:
            out |= _SAMPLE - _cased(chr(av))
        elif op is c.ANY:
            out |= _SAMPLE - {"\n"}
        elif op is c.IN:
            out |= _class(av)
        elif op in _REPEATS:
            out |= _chars(_flat(av[2]))
        elif op is c.SUBPATTERN:
            out |= _chars(_flat(av[3]))
        elif op is c.ATOMIC_GROUP:
            out |= _chars(_flat(av))
        elif op is c.BRANCH:
            for alt in av[1]:
                out |= _chars(_flat(alt))
        elif op is c.GROUPREF_EXISTS:
            for arm in av[1:]:
                if arm is not None:
                    out |= _chars(list(arm))
        elif op is c.GROUPREF:
            out |= _SAMPLE
    return out


def _class(items: list[tuple[Any, Any]]) -> frozenset[str]:
    negate = False
    members: set[str] = set()
    for op, av in items:
        if op is c.NEGATE:
            negate = True
        elif op is c.LITERAL:
            members |= _cased(chr(av))
        elif op is c.RANGE:
            lo, hi = av
            members |= {ch for ch in _SAMPLE if any(lo <= ord(x) <= hi for x in _cased(ch))}
        elif op is c.CATEGORY and av in _CATEGORIES:
            members |= {ch for ch in _SAMPLE if _CATEGORIES[av](ch)}
        else:
            members |= _SAMPLE  # a class the check does not model: assume the worst
    return _SAMPLE - members if negate else frozenset(members)


def _cased(ch: str) -> frozenset[str]:
    """`ch` as case-insensitive matching sees it (one-character case forms only)."""
    return frozenset(x for x in (ch, ch.lower(), ch.upper()) if len(x) == 1)


def required_literal(pattern: str) -> str:
    """The longest run of plain ASCII characters every match must contain (lower case), or
    "": a cheap test that skips the regex for a text without it (see `prefilter_form`)."""
    try:
        items = _flat(list(sre.parse(pattern, re.IGNORECASE)))
    except re.error:
        return ""
    best, run = "", ""
    for op, av in items:
        if op is c.LITERAL and 32 <= av < 127:
            run += chr(av).lower()
            best = max(best, run, key=len)
        else:
            run = ""
    return best if len(best) >= 2 else ""


def prefilter_form(text: str) -> str:
    """`text` as `required_literal` is looked for in it: every character that matches an
    ASCII letter case-insensitively (the long s for s, the Kelvin sign for k, the dotless
    and the dotted I for i) becomes that letter (checked over all of Unicode by the unit
    tests)."""
    if text.isascii():
        return text.lower()
    return text.casefold().replace("\u0131", "i").replace("\u0307", "")
