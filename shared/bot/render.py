"""Messages of the definition to Cloud API message bodies, in the customer's language, with
the variables filled in. Pure.

The language of a text: the customer's (the contact's `language` attribute, else the
definition's `language`); a text not written in it falls back to the same language without
its region (`pt` for `pt-br`), then to the text written for every language, then to the
definition's language, then to the first written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.bot import limits
from shared.bot.model import (
    ButtonsMessage,
    CtaUrlMessage,
    ListMessage,
    Message,
    Option,
    TemplateMessage,
    Text,
    TextMessage,
)
from shared.bot.templates import render

Lookup = Callable[[tuple[str, ...]], str]


def pick(text: Text, language: str, default: str) -> Any:
    variants = text.variants
    for key in (language, language.split("-")[0], "", default):
        if key in variants:
            return variants[key]
    return next(iter(variants.values()))


def say(text: Text, language: str, default: str, lookup: Lookup, limit: int = 0) -> str:
    out = render(pick(text, language, default), lookup)
    return cut(out, limit) if limit else out


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; a cut text ends with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def text_body(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": cut(text, limits.TEXT_BODY)}}


def body(message: Message, language: str, default: str, lookup: Lookup) -> dict[str, Any] | None:
    """The Cloud API body of `message` (without `to`), or None when it renders empty, which
    WhatsApp would refuse."""

    def s(text: Text, limit: int) -> str:
        return say(text, language, default, lookup, limit).strip()

    if isinstance(message, TextMessage):
        out = s(message.text, limits.TEXT_BODY)
        return text_body(out) if out else None
    if isinstance(message, TemplateMessage):
        return _template(message, language, lookup)
    if isinstance(message, ButtonsMessage):
        interactive: dict[str, Any] = {
            "type": "button",
            "action": {
                "buttons": [
                    {"type": "reply", "reply": _option(o, s, limits.BUTTON_TITLE)}
                    for o in message.options
                ]
            },
        }
        main = s(message.body, limits.INTERACTIVE_BODY)
    elif isinstance(message, ListMessage):
        sections = []
        for section in message.sections:
            rows = []
            for row in section.rows:
                item = _option(row, s, limits.ROW_TITLE)
                if row.description is not None:
                    described = s(row.description, limits.ROW_DESCRIPTION)
                    if described:
                        item["description"] = described
                rows.append(item)
            entry: dict[str, Any] = {"rows": rows}
            if section.title is not None:
                entry["title"] = s(section.title, limits.SECTION_TITLE) or " "
            sections.append(entry)
        label = s(message.button, limits.LIST_BUTTON) or "Menu"
        interactive = {"type": "list", "action": {"button": label, "sections": sections}}
        main = s(message.body, limits.LIST_BODY)
    else:
        assert isinstance(message, CtaUrlMessage)
        url = render(message.url, lookup).strip()
        label = s(message.text, limits.CTA_TEXT)
        if not url.lower().startswith(("https://", "http://")) or not label:
            return None  # a variable left the link or its label empty
        interactive = {
            "type": "cta_url",
            "action": {"name": "cta_url", "parameters": {"display_text": label, "url": url}},
        }
        main = s(message.body, limits.INTERACTIVE_BODY)
    if not main:
        return None
    ordered: dict[str, Any] = {"type": interactive["type"]}
    if message.header is not None and (header := s(message.header, limits.HEADER)):
        ordered["header"] = {"type": "text", "text": header}
    ordered["body"] = {"text": main}
    if message.footer is not None and (footer := s(message.footer, limits.FOOTER)):
        ordered["footer"] = {"text": footer}
    ordered["action"] = interactive["action"]
    return {"type": "interactive", "interactive": ordered}


def _option(option: Option, s: Callable[[Text, int], str], limit: int) -> dict[str, Any]:
    return {"id": option.id, "title": s(option.title, limit) or cut(option.id, limit)}


def _template(message: TemplateMessage, language: str, lookup: Lookup) -> dict[str, Any]:
    code = message.language or _meta_language(language)
    template: dict[str, Any] = {"name": message.name, "language": {"code": code}}
    parameters: list[dict[str, str]] = [
        {"type": "text", "text": _parameter(p, lookup)} for p in message.parameters
    ]
    parameters += [
        {"type": "text", "parameter_name": name, "text": _parameter(p, lookup)}
        for name, p in message.named.items()
    ]
    if parameters:
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {"type": "template", "template": template}


def _meta_language(code: str) -> str:
    """Meta's template language codes: `en`, `en_US`, `pt_BR`."""
    base, _, region = code.partition("-")
    return f"{base}_{region.upper()}" if region else base


def _parameter(template: Any, lookup: Lookup) -> str:
    # Meta refuses an empty template parameter (132000): a dash says "nothing" instead.
    return render(template, lookup).strip() or "-"
