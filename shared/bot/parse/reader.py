"""The parser's toolbox: reads one value of the data, or records a problem at its path and
returns None, so a single pass reports every problem in the definition. Pure."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.bot import templates
from shared.bot.model import Template, Text
from shared.bot.problems import Problem, join

LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})?$")
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Scope:
    """Where a text is written, for the checks of `{{slots.X}}` and `{{match.X}}`."""

    flow: str = ""  # the flow whose texts these are
    rule: int = -1  # or the rule (its index)


@dataclass
class Written:
    path: str
    template: Template
    scope: Scope


@dataclass
class Reader:
    language: str = "en"
    problems: list[Problem] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)  # every template, for the checks
    scope: Scope = Scope()
    rule_at: dict[int, Any] = field(default_factory=dict)  # rules built, by their index
    declared_flows: set[str] = field(default_factory=set)  # flow names written, built or not
    declared_rules: set[str] = field(default_factory=set)

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(
        self, value: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {_kind(value)}")
            return None
        allowed = tuple(allowed)
        for key in value:
            if not isinstance(key, str):
                self.error(path, f"key {key!r} must be text")
            elif key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean `{near[0]}`?" if near else f" (known: {', '.join(allowed)})"
                self.error(join(path, key), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.error(join(path, key), "required")
        return value

    def string(
        self, value: Any, path: str, *, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"must be non-empty text, not {_kind(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.error(path, f"`{value}` is not allowed here (letters, digits, _ and -)")
            return None
        return value

    def ident(self, value: Any, path: str) -> str | None:
        return self.string(value, path, pattern=ID)

    def strings(self, value: Any, path: str) -> list[str]:
        """One text or a list of texts."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.error(path, f"must be text or a non-empty list of texts, not {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(items):
            text = self.string(item, join(path, i) if isinstance(value, list) else path)
            if text is not None:
                out.append(text)
        return out

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, not {_kind(value)}")
            return False
        return value

    def integer(self, value: Any, path: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be a whole number, not {_kind(value)}")
            return None
        if not low <= value <= high:
            self.error(path, f"must be between {low} and {high}")
            return None
        return value

    def number(self, value: Any, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"must be a number, not {_kind(value)}")
            return None
        return float(value)

    def template(self, value: Any, path: str, *, limit: int = 0) -> Template | None:
        if not isinstance(value, str):
            self.error(path, f"must be text, not {_kind(value)}")
            return None
        try:
            parsed = templates.parse(value)
        except templates.TemplateError as exc:
            self.error(path, str(exc))
            return None
        literal = sum(len(p) for p in parsed.parts if isinstance(p, str))
        if limit and literal > limit:
            self.error(path, f"is {literal} characters; WhatsApp allows at most {limit}")
        self.written.append(Written(path, parsed, self.scope))
        return parsed

    def text(self, value: Any, path: str, *, limit: int = 0) -> Text | None:
        """A text once for every language, or per language: `{en: "...", it: "..."}`."""
        if isinstance(value, str):
            if not value.strip():
                self.error(path, "must not be empty")
                return None
            parsed = self.template(value, path, limit=limit)
            return Text({"": parsed}) if parsed else None
        if not isinstance(value, dict) or not value:
            self.error(path, f"must be text or texts per language, not {_kind(value)}")
            return None
        variants: dict[str, Template] = {}
        for key, item in value.items():
            where = join(path, str(key))
            if not isinstance(key, str) or not LANGUAGE.match(key.lower()):
                self.error(where, f"`{key}` is not a language code (like en, it, pt-br)")
                continue
            if not isinstance(item, str) or not item.strip():
                self.error(where, f"must be non-empty text, not {_kind(item)}")
                continue
            parsed = self.template(item, where, limit=limit)
            if parsed:
                variants[key.lower()] = parsed
        if variants and self.language not in variants:
            self.error(path, f"has no text in the definition's language `{self.language}`")
        return Text(variants) if variants else None

    def duration(self, value: Any, path: str, *, positive: bool = False) -> float | None:
        from shared.bot.values import duration

        seconds = duration(value)
        if seconds is None or (positive and seconds <= 0):
            self.error(path, f"`{value}` is not a duration (like 45s, 30m, 12h, 1d, 1h30m)")
            return None
        return seconds

    def bounded(self, seconds: float | None, path: str, high: float) -> float | None:
        if seconds is not None and seconds > high:
            self.error(path, f"must be at most {int(high)} seconds")
            return None
        return seconds


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "empty text" if not value.strip() else f"the text `{value[:40]}`"
    return type(value).__name__
