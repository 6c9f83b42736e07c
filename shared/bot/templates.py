"""`{{variables}}` in texts: parsed once when the definition is loaded, rendered per turn.

A variable is `{{contact.name}}`, `{{contact.attributes.X}}`, `{{slots.X}}`,
`{{match.X}}`, `{{business.hours}}` or `{{business.next_open}}`, with spaces allowed
inside the braces, and optionally a default after a bar: `{{contact.name|there}}`. A
variable with no value renders as its default, or as nothing: never as the braces. Values
are inserted as they are, in one pass, so a value that itself contains `{{...}}` is not
expanded. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable

from shared.bot.model import Template, Var

_VARIABLE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^[a-z_]+(?:\.[A-Za-z0-9_-]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

KNOWN = "contact.name, contact.attributes.X, slots.X, match.X, business.hours, business.next_open"


class TemplateError(ValueError):
    pass


def parse(source: str) -> Template:
    """The template of `source`, or TemplateError naming the first bad variable."""
    parts: list[str | Var] = []
    at = 0
    for found in _VARIABLE.finditer(source):
        if found.start() > at:
            parts.append(source[at : found.start()])
        parts.append(_variable(found[1]))
        at = found.end()
    rest = source[at:]
    if "{{" in rest:
        raise TemplateError("`{{` is not closed by `}}`")
    if rest:
        parts.append(rest)
    return Template(source, tuple(parts))


def _variable(inner: str) -> Var:
    path_text, bar, default = inner.partition("|")
    path_text = path_text.strip()
    if not _PATH.match(path_text):
        raise TemplateError(f"`{{{{{inner}}}}}` is not a variable (known: {KNOWN})")
    path = tuple(path_text.split("."))
    if not _known(path):
        raise TemplateError(f"unknown variable `{{{{{path_text}}}}}` (known: {KNOWN})")
    return Var(path, default.strip() if bar else "")


def _known(path: tuple[str, ...]) -> bool:
    match path:
        case ("contact", "name") | ("business", "hours") | ("business", "next_open"):
            return True
        case ("contact", "attributes", name) | ("slots", name) | ("match", name):
            return bool(_NAME.match(name))
    return False


def variables(template: Template) -> list[Var]:
    return [p for p in template.parts if isinstance(p, Var)]


def render(template: Template, lookup: Callable[[tuple[str, ...]], str]) -> str:
    """The text, each variable replaced by `lookup(path)` (or its default when empty)."""
    if len(template.parts) == 1 and isinstance(template.parts[0], str):
        return template.parts[0]
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(lookup(part.path) or part.default)
    return "".join(out)
