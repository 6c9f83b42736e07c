"""Plain data (from YAML or JSON) to a typed `Definition`, with every structural problem
named by its path: unknown keys, wrong types, Meta's limits, unsafe regexes. The checks
that need the whole definition (references between its parts) are in `checks`."""

from __future__ import annotations

from typing import Any

from shared.bot.model import Definition, LLMSettings
from shared.bot.parse.flows import flows
from shared.bot.parse.messages import messages
from shared.bot.parse.reader import LANGUAGE, Reader
from shared.bot.parse.rules import fallback, rules
from shared.bot.parse.settings import HANDOFF_REPLY, business_hours, llm, opt_out

TOP = (
    "version",
    "language",
    "persona",
    "business_hours",
    "rules",
    "fallback",
    "flows",
    "opt_out",
    "llm",
)

__all__ = ["TOP", "Reader", "messages", "parse"]


def parse(data: Any) -> tuple[Definition | None, Reader]:
    """The definition, with the parts that could be read (None when the document is not a
    mapping), and the reader: the problems, every template written and the names declared,
    for the checks. The definition is usable only when there are no problems."""
    r = Reader()
    spec = r.mapping(data, "", TOP)
    if spec is None:
        return None, r
    version = spec.get("version", 1)
    if version != 1:
        r.error("version", "this is version 1 of the language: write `version: 1`")
    language = spec.get("language", "en")
    if not isinstance(language, str) or not LANGUAGE.match(language.lower()):
        r.error("language", f"`{language}` is not a language code (like en, it)")
        language = "en"
    r.language = language.lower()
    persona = ""
    if "persona" in spec:
        persona = r.string(spec["persona"], "persona") or ""
    hours = (
        business_hours(r, spec["business_hours"], "business_hours")
        if "business_hours" in spec
        else None
    )
    found_rules = rules(r, spec.get("rules"), "rules")
    found_fallback = fallback(r, spec["fallback"], "fallback") if "fallback" in spec else None
    found_flows = flows(r, spec.get("flows"), "flows")
    keywords = opt_out(r, spec.get("opt_out"), "opt_out")
    settings = (
        llm(r, spec["llm"], "llm") if "llm" in spec else LLMSettings(handoff_reply=HANDOFF_REPLY)
    )
    definition = Definition(
        version=1,
        language=r.language,
        rules=found_rules,
        flows=found_flows,
        opt_out=keywords,
        llm=settings,
        persona=persona,
        business_hours=hours,
        fallback=found_fallback,
    )
    return definition, r
