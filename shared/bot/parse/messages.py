"""What the bot says: a text, buttons, a list, a link button (`cta_url`) or a template,
or several of them in a list. Wherever the language takes a message (`reply`, `ask`,
`retry`, `away_message`, `timeout_message`, ...) a plain text or texts per language is
short for `{text: ...}`."""

from __future__ import annotations

import re
from typing import Any

from shared.bot import limits
from shared.bot.model import (
    ButtonsMessage,
    CtaUrlMessage,
    ListMessage,
    Message,
    Option,
    Section,
    TemplateMessage,
    Text,
    TextMessage,
)
from shared.bot.parse.reader import LANGUAGE, Reader
from shared.bot.problems import join

KINDS = ("text", "buttons", "list", "cta_url", "template")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_URL = re.compile(r"^(https?://\S+|\{\{)", re.IGNORECASE)


def is_message(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in KINDS)


def messages(r: Reader, value: Any, path: str) -> tuple[Message, ...]:
    """One message, or a list of them."""
    if isinstance(value, list):
        if not value:
            r.error(path, "must not be an empty list")
        if len(value) > limits.REPLIES:
            r.error(path, f"at most {limits.REPLIES} messages in one reply")
        out = [message(r, item, join(path, i)) for i, item in enumerate(value)]
        return tuple(m for m in out if m is not None)
    one = message(r, value, path)
    return (one,) if one else ()


def message(r: Reader, value: Any, path: str) -> Message | None:
    if not is_message(value):
        text = r.text(value, path, limit=limits.TEXT_BODY)
        return TextMessage(text) if text else None
    kinds = [k for k in KINDS if k in value]
    if len(kinds) > 1:
        r.error(path, f"one message is one of {', '.join(KINDS)}, not {' and '.join(kinds)}")
        return None
    [kind] = kinds
    r.mapping(value, path, (kind,))
    where = join(path, kind)
    body = value[kind]
    if kind == "text":
        text = r.text(body, where, limit=limits.TEXT_BODY)
        return TextMessage(text) if text else None
    if kind == "buttons":
        return _buttons(r, body, where)
    if kind == "list":
        return _list(r, body, where)
    if kind == "cta_url":
        return _cta_url(r, body, where)
    return _template(r, body, where)


def _frame(r: Reader, spec: dict[str, Any], path: str) -> tuple[Text | None, Text | None]:
    header = (
        r.text(spec["header"], join(path, "header"), limit=limits.HEADER)
        if "header" in spec
        else None
    )
    footer = (
        r.text(spec["footer"], join(path, "footer"), limit=limits.FOOTER)
        if "footer" in spec
        else None
    )
    return header, footer


def _buttons(r: Reader, value: Any, path: str) -> Message | None:
    spec = r.mapping(value, path, ("body", "options", "header", "footer"), ("body", "options"))
    if spec is None or "body" not in spec or "options" not in spec:
        return None
    body = r.text(spec["body"], join(path, "body"), limit=limits.INTERACTIVE_BODY)
    options = _options(
        r, spec["options"], join(path, "options"), limits.BUTTON_TITLE, limits.BUTTON_ID
    )
    if len(options) > limits.BUTTONS:
        r.error(
            join(path, "options"),
            f"{len(options)} buttons; WhatsApp allows at most {limits.BUTTONS}",
        )
    header, footer = _frame(r, spec, path)
    if body is None or not options:
        return None
    return ButtonsMessage(body, tuple(options), header, footer)


def _options(
    r: Reader, value: Any, path: str, title_limit: int, id_limit: int, *, rows: bool = False
) -> list[Option]:
    if not isinstance(value, list) or not value:
        r.error(path, "must be a non-empty list")
        return []
    allowed = ("id", "title", "description") if rows else ("id", "title")
    out: list[Option] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = join(path, i)
        spec = r.mapping(item, where, allowed, ("id", "title"))
        if spec is None or "id" not in spec or "title" not in spec:
            continue
        ident = _option_id(r, spec["id"], join(where, "id"), id_limit)
        title = r.text(spec["title"], join(where, "title"), limit=title_limit)
        description = None
        if "description" in spec:
            description = r.text(
                spec["description"], join(where, "description"), limit=limits.ROW_DESCRIPTION
            )
        if ident is not None and ident in seen:
            r.error(join(where, "id"), f"`{ident}` is already the id of another option")
        elif ident is not None and title is not None:
            seen.add(ident)
            out.append(Option(ident, title, description))
    return out


def _option_id(r: Reader, value: Any, path: str, limit: int) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    ident = r.string(value, path)
    if ident is not None and len(ident) > limit:
        r.error(path, f"is {len(ident)} characters; WhatsApp allows at most {limit}")
        return None
    return ident


def _list(r: Reader, value: Any, path: str) -> Message | None:
    allowed = ("body", "button", "sections", "rows", "header", "footer")
    spec = r.mapping(value, path, allowed, ("body", "button"))
    if spec is None or "body" not in spec or "button" not in spec:
        return None
    body = r.text(spec["body"], join(path, "body"), limit=limits.LIST_BODY)
    button = r.text(spec["button"], join(path, "button"), limit=limits.LIST_BUTTON)
    sections: list[Section] = []
    if ("rows" in spec) == ("sections" in spec):
        r.error(path, "needs `rows` (one section) or `sections`, one of them")
    elif "rows" in spec:
        rows = _options(
            r, spec["rows"], join(path, "rows"), limits.ROW_TITLE, limits.ROW_ID, rows=True
        )
        sections = [Section(tuple(rows))] if rows else []
    else:
        sections = _sections(r, spec["sections"], join(path, "sections"))
    ids = [row.id for s in sections for row in s.rows]
    if len(ids) > limits.LIST_ROWS:
        where = join(path, "rows" if "rows" in spec else "sections")
        r.error(
            where, f"{len(ids)} rows; WhatsApp allows at most {limits.LIST_ROWS} in all sections"
        )
    if len(ids) != len(set(ids)):
        r.error(join(path, "sections"), "a row id is used twice")
    header, footer = _frame(r, spec, path)
    if body is None or button is None or not sections:
        return None
    return ListMessage(body, button, tuple(sections), header, footer)


def _sections(r: Reader, value: Any, path: str) -> list[Section]:
    if not isinstance(value, list) or not value:
        r.error(path, "must be a non-empty list")
        return []
    if len(value) > limits.LIST_SECTIONS:
        r.error(path, f"{len(value)} sections; WhatsApp allows at most {limits.LIST_SECTIONS}")
    out = []
    for i, item in enumerate(value):
        where = join(path, i)
        spec = r.mapping(item, where, ("title", "rows"), ("rows",))
        if spec is None or "rows" not in spec:
            continue
        title = None
        if "title" in spec:
            title = r.text(spec["title"], join(where, "title"), limit=limits.SECTION_TITLE)
        elif len(value) > 1:
            r.error(join(where, "title"), "required when the list has several sections")
        rows = _options(
            r, spec["rows"], join(where, "rows"), limits.ROW_TITLE, limits.ROW_ID, rows=True
        )
        if rows:
            out.append(Section(tuple(rows), title))
    return out


def _cta_url(r: Reader, value: Any, path: str) -> Message | None:
    spec = r.mapping(
        value, path, ("body", "text", "url", "header", "footer"), ("body", "text", "url")
    )
    if spec is None or not all(k in spec for k in ("body", "text", "url")):
        return None
    body = r.text(spec["body"], join(path, "body"), limit=limits.INTERACTIVE_BODY)
    label = r.text(spec["text"], join(path, "text"), limit=limits.CTA_TEXT)
    url = r.template(spec["url"], join(path, "url"))
    if url is not None and not _URL.match(url.source):
        r.error(join(path, "url"), "must start with https:// (or http://)")
        url = None
    header, footer = _frame(r, spec, path)
    if body is None or label is None or url is None:
        return None
    return CtaUrlMessage(body, label, url, header, footer)


def _template(r: Reader, value: Any, path: str) -> Message | None:
    spec = r.mapping(value, path, ("name", "language", "parameters"))
    if spec is None:
        return None
    if "name" not in spec:
        r.error(join(path, "name"), "a template reply must name its template")
        return None
    name = spec["name"]
    if not isinstance(name, str) or not _TEMPLATE_NAME.match(name):
        r.error(join(path, "name"), "a template's name is lower-case letters, digits and _")
        return None
    language = ""
    if "language" in spec:
        code = spec["language"]
        if not isinstance(code, str) or not LANGUAGE.match(code.lower().replace("_", "-")):
            r.error(join(path, "language"), "must be a language code (like en, en_US, it)")
        else:
            language = code
    parameters = spec.get("parameters", [])
    where = join(path, "parameters")
    if isinstance(parameters, list):
        positional = [r.template(_str(p), join(where, i)) for i, p in enumerate(parameters)]
        return TemplateMessage(name, language, tuple(p for p in positional if p))
    if isinstance(parameters, dict):
        named = {}
        for key, item in parameters.items():
            if not isinstance(key, str) or not re.match(r"^[a-z0-9_]+$", key):
                r.error(
                    join(where, str(key)), "a parameter's name is lower-case letters, digits and _"
                )
                continue
            parsed = r.template(_str(item), join(where, key))
            if parsed:
                named[key] = parsed
        return TemplateMessage(name, language, (), named)
    r.error(where, "must be a list (positional parameters) or a mapping (named parameters)")
    return None


def _str(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
