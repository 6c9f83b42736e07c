"""Which rule answers a message: the first in order (higher `priority` first, then as
written) whose `match` has an alternative that fits. Pure and cheap.

Rules are compiled once into one index: every word or phrase of every `any` under its
first word, every button id, every message kind. A message costs one dictionary look-up
per word, plus the regexes of rules placed before the best rule found that way (regexes
are the only part that grows with the number of rules; each searches at most
`limits.REGEX_SCAN` characters)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.bot import limits
from shared.bot.model import Match, Rule
from shared.bot.runtime_types import Turn
from shared.bot.safe_regex import prefilter_form, required_literal


@dataclass(frozen=True)
class Found:
    position: int  # in trial order
    rule: Rule
    groups: dict[str, str] = field(default_factory=dict)  # the regex's named groups
    language: str = ""  # the language the matching phrase was listed under, if any


class Matcher:
    """One `match`, for branches: the same alternatives, tried directly."""

    def __init__(self, match: Match) -> None:
        self.phrases = {phrase for phrase, _ in match.phrases}
        self.lengths = sorted({len(p) for p in self.phrases})
        self.regex = re.compile(match.regex, re.IGNORECASE) if match.regex else None
        self.buttons = frozenset(match.buttons)
        self.kinds = frozenset(match.kinds)

    def test(self, words: tuple[str, ...], turn: Turn) -> dict[str, str] | None:
        if turn.button_id and turn.button_id in self.buttons:
            return {}
        if turn.kind in self.kinds:
            return {}
        for size in self.lengths:
            for i in range(len(words) - size + 1):
                if words[i : i + size] in self.phrases:
                    return {}
        if self.regex:
            found = self.regex.search(turn.text[: limits.REGEX_SCAN])
            if found:
                return _groups(found)
        return None


class RuleIndex:
    def __init__(self, rules: tuple[Rule, ...], default_language: str) -> None:
        order = sorted(range(len(rules)), key=lambda i: (-rules[i].priority, i))
        self.rules = [rules[i] for i in order]
        # first word -> [(phrase, position, language)], positions ascending
        phrases: dict[str, dict[tuple[tuple[str, ...], int], str]] = defaultdict(dict)
        self.buttons: dict[str, list[int]] = defaultdict(list)
        self.kinds: dict[str, list[int]] = defaultdict(list)
        self.regexes: list[tuple[int, re.Pattern[str], str]] = []  # with a required literal
        for position, rule in enumerate(self.rules):
            for phrase, language in rule.match.phrases:
                entries = phrases[phrase[0]]
                known = entries.get((phrase, position))
                # A phrase listed under several languages counts as the default's, if listed.
                if known is None or (language == default_language and known != default_language):
                    entries[(phrase, position)] = language
            for button in rule.match.buttons:
                self.buttons[button].append(position)
            for kind in rule.match.kinds:
                self.kinds[kind].append(position)
            if rule.match.regex:
                compiled = re.compile(rule.match.regex, re.IGNORECASE)
                self.regexes.append((position, compiled, required_literal(rule.match.regex)))
        self.phrases = {
            first: sorted(
                ((p, pos, lang) for (p, pos), lang in entries.items()), key=lambda e: e[1]
            )
            for first, entries in phrases.items()
        }
        self.interrupt = [r.interrupt for r in self.rules]
        self.languages = [frozenset(r.languages) for r in self.rules]
        self.ids = [r.id for r in self.rules]
        self.regex_at = {position: compiled for position, compiled, _ in self.regexes}

    def first(
        self,
        words: tuple[str, ...],
        turn: Turn,
        *,
        language: str,
        interrupt_only: bool = False,
        allowed_ids: frozenset[str] | None = None,
    ) -> Found | None:
        """The first rule that matches and may run: only `interrupt` rules in a flow, only
        `allowed_ids` when closed, only rules for the customer's language."""

        def may(position: int) -> bool:
            if interrupt_only and not self.interrupt[position]:
                return False
            if allowed_ids is not None and self.ids[position] not in allowed_ids:
                return False
            langs = self.languages[position]
            return not langs or language in langs or language.split("-")[0] in langs

        best, best_language = self._phrase(words, may)
        by_button = self.buttons.get(turn.button_id, ()) if turn.button_id else ()
        for positions in (by_button, self.kinds.get(turn.kind, ())):
            position = _lowest(positions, best, may)
            if position < best:
                best, best_language = position, ""
        text = turn.text[: limits.REGEX_SCAN]
        if text:
            folded = ""
            for position, regex, literal in self.regexes:
                if position >= best:
                    break
                if literal:
                    folded = folded or prefilter_form(text)
                    if literal not in folded:
                        continue  # the regex cannot match: not worth its search
                if may(position):
                    found = regex.search(text)
                    if found:
                        return Found(position, self.rules[position], _groups(found))
        if best == len(self.rules):
            return None
        groups: dict[str, str] = {}
        own = self.regex_at.get(best)
        if own is not None and text:
            found = own.search(text)
            groups = _groups(found) if found else {}
        return Found(best, self.rules[best], groups, best_language)

    def _phrase(self, words: tuple[str, ...], may: Callable[[int], bool]) -> tuple[int, str]:
        """The first rule one of whose phrases is in the words, and the phrase's language."""
        best, best_language = len(self.rules), ""
        for i, word in enumerate(words):
            for phrase, position, language in self.phrases.get(word, ()):
                if position >= best:
                    break  # entries are in position order: nothing better under this word
                size = len(phrase)
                if (size == 1 or words[i : i + size] == phrase) and may(position):
                    best, best_language = position, language
                    break
        return best, best_language


def _lowest(positions: Iterable[int], best: int, may: Callable[[int], bool]) -> int:
    for position in positions:
        if position >= best:
            break
        if may(position):
            return position
    return best


def _groups(found: re.Match[str]) -> dict[str, str]:
    return {k: v for k, v in found.groupdict().items() if v is not None}
