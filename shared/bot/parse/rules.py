"""Rules, what they match, what they do, and the fallback."""

from __future__ import annotations

from typing import Any

from shared.bot import limits
from shared.bot.model import (
    Action,
    AttributeAction,
    EmitAction,
    Fallback,
    HandoffAction,
    LLMAction,
    LLMCall,
    Match,
    OptInAction,
    OptOutAction,
    Rule,
    TagAction,
    UntagAction,
)
from shared.bot.parse.messages import messages
from shared.bot.parse.reader import ID, LANGUAGE, Reader, Scope
from shared.bot.problems import join
from shared.bot.safe_regex import UnsafePattern, compile_safe
from shared.bot.text import words

# What a message can be, as the runtime tells it in `Turn.kind`.
KINDS = (
    "text",
    "image",
    "video",
    "document",
    "sticker",
    "audio",
    "voice",
    "location",
    "contacts",
    "order",
    "button",
    "list",
    "form",
    "welcome",
)
RESERVED_IDS = ("fallback", "all")
_RULE_KEYS = (
    "id",
    "match",
    "reply",
    "flow",
    "handoff",
    "interrupt",
    "end_flow",
    "actions",
    "priority",
    "languages",
)
_ACTIONS = ("tag", "untag", "attribute", "opt_out", "opt_in", "handoff", "emit", "llm")


def rules(r: Reader, value: Any, path: str) -> tuple[Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        r.error(path, "must be a list of rules")
        return ()
    out: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        where = join(path, i)
        r.scope = Scope(rule=i)
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            r.declared_rules.add(item["id"])
        rule = _rule(r, item, where)
        r.scope = Scope()
        if rule is None:
            continue
        if rule.id in seen:
            r.error(join(where, "id"), f"`{rule.id}` is already the id of rules[{seen[rule.id]}]")
            continue
        seen[rule.id] = i
        r.rule_at[i] = rule
        out.append(rule)
    return tuple(out)


def _rule(r: Reader, value: Any, path: str) -> Rule | None:
    spec = r.mapping(value, path, _RULE_KEYS, ("id", "match"))
    if spec is None:
        return None
    ident = r.ident(spec["id"], join(path, "id")) if "id" in spec else None
    if ident in RESERVED_IDS:
        r.error(join(path, "id"), f"`{ident}` is a reserved word, not a rule id")
        ident = None
    found = match(r, spec["match"], join(path, "match")) if "match" in spec else None
    reply = messages(r, spec["reply"], join(path, "reply")) if "reply" in spec else ()
    flow = (r.ident(spec["flow"], join(path, "flow")) or "") if "flow" in spec else ""
    flags = {
        key: r.boolean(spec[key], join(path, key)) if key in spec else False
        for key in ("handoff", "interrupt", "end_flow")
    }
    acts = actions(r, spec["actions"], join(path, "actions")) if "actions" in spec else ()
    priority = 0
    if "priority" in spec:
        priority = r.integer(spec["priority"], join(path, "priority"), -1000, 1000) or 0
    languages: list[str] = []
    if "languages" in spec:
        for j, code in enumerate(r.strings(spec["languages"], join(path, "languages"))):
            if LANGUAGE.match(code.lower()):
                languages.append(code.lower())
            else:
                r.error(join(join(path, "languages"), j), f"`{code}` is not a language code")
    if flags["handoff"] and flow:
        r.error(path, "has both `handoff` and `flow`: a handed-off customer is not in a flow")
    if flags["end_flow"] and not flags["interrupt"]:
        r.error(join(path, "end_flow"), "only means something with `interrupt: true`")
    if not (reply or flow or flags["handoff"] or acts or flags["end_flow"]):
        if "reply" not in spec and "actions" not in spec:
            r.error(path, "does nothing: give it a `reply`, a `flow`, `handoff` or `actions`")
    if ident is None or found is None:
        return None
    return Rule(
        id=ident,
        match=found,
        reply=reply,
        flow=flow,
        handoff=flags["handoff"],
        interrupt=flags["interrupt"],
        end_flow=flags["end_flow"],
        actions=acts,
        priority=priority,
        languages=tuple(languages),
    )


def match(r: Reader, value: Any, path: str) -> Match | None:
    spec = r.mapping(value, path, ("any", "regex", "button", "kind"))
    if spec is None:
        return None
    if not spec:
        r.error(path, "must say what to match: any, regex, button or kind")
        return None
    phrases = _phrases(r, spec["any"], join(path, "any")) if "any" in spec else []
    regex = ""
    if "regex" in spec:
        pattern = r.string(spec["regex"], join(path, "regex"))
        if pattern is None:
            return None
        try:
            compile_safe(pattern)
        except UnsafePattern as exc:
            r.error(join(path, "regex"), str(exc))
            return None  # and so its rule, whose `{{match.X}}` would be reported for nothing
        regex = pattern
    buttons = []
    if "button" in spec:
        buttons = [str(b) for b in _ids(r, spec["button"], join(path, "button"))]
    kinds = []
    if "kind" in spec:
        for i, kind in enumerate(r.strings(spec["kind"], join(path, "kind"))):
            if kind in KINDS:
                kinds.append(kind)
            else:
                where = (
                    join(join(path, "kind"), i)
                    if isinstance(spec["kind"], list)
                    else join(path, "kind")
                )
                r.error(where, f"`{kind}` is not a kind of message (known: {', '.join(KINDS)})")
    return Match(tuple(phrases), regex, tuple(buttons), tuple(kinds))


def _ids(r: Reader, value: Any, path: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        item = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        ident = r.string(item, join(path, i) if isinstance(value, list) else path)
        if ident is not None:
            out.append(ident)
    return out


def _phrases(r: Reader, value: Any, path: str) -> list[tuple[tuple[str, ...], str]]:
    """`any`: a list of words and phrases, or lists per language `{en: [...], it: [...]}`."""
    if isinstance(value, dict):
        out = []
        for code, items in value.items():
            where = join(path, str(code))
            if not isinstance(code, str) or not LANGUAGE.match(code.lower()):
                r.error(where, f"`{code}` is not a language code")
                continue
            out += [(p, code.lower()) for p, _ in _phrases(r, items, where)]
        return out
    out = []
    for i, phrase in enumerate(r.strings(value, path)):
        folded = words(phrase)
        where = join(path, i) if isinstance(value, list) else path
        if not folded:
            r.error(where, f"`{phrase}` has no words to match")
        else:
            out.append((folded, ""))
    return out


def actions(r: Reader, value: Any, path: str, *, llm: bool = False) -> tuple[Action, ...]:
    if not isinstance(value, list):
        r.error(path, "must be a list of actions")
        return ()
    out: list[Action] = []
    for i, item in enumerate(value):
        where = join(path, i)
        spec = r.mapping(item, where, _ACTIONS)
        if spec is None or any(key not in _ACTIONS for key in spec):
            continue
        if len(spec) != 1:
            r.error(where, f"one action per item, one of: {', '.join(_ACTIONS)}")
            continue
        [(key, body)] = spec.items()
        if key == "llm" and not llm:
            r.error(join(where, key), "an LLM call is a flow's `done` action or an `llm` step")
            continue
        action = _action(r, key, body, join(where, key))
        if action is not None:
            out.append(action)
    if sum(isinstance(a, LLMAction) for a in out) > 1:
        r.error(path, "at most one `llm` action: one LLM call per turn")
    return tuple(out)


def _action(r: Reader, key: str, body: Any, path: str) -> Action | None:
    if key in ("tag", "untag"):
        name = r.string(body, path)
        if name is None:
            return None
        return TagAction(name) if key == "tag" else UntagAction(name)
    if key == "emit":
        name = r.ident(body, path)
        return EmitAction(name) if name else None
    if key == "attribute":
        spec = r.mapping(body, path, body.keys() if isinstance(body, dict) else ())
        if not spec:
            if spec is not None:
                r.error(path, "must name at least one attribute")
            return None
        values = {}
        for name, item in spec.items():
            where = join(path, str(name))
            if not isinstance(name, str) or not ID.match(name):
                r.error(where, "an attribute's name is letters, digits, _ and -")
                continue
            parsed = r.template(str(item) if isinstance(item, int | float) else item, where)
            if parsed:
                values[name] = parsed
        return AttributeAction(values) if values else None
    if key == "llm":
        call = llm_call(r, body, path, prompt_required=True)
        return LLMAction(call) if call else None
    if not r.boolean(body, path):
        r.error(path, f"write `{key}: true`")
        return None
    return {"opt_out": OptOutAction, "opt_in": OptInAction, "handoff": HandoffAction}[key]()


def llm_call(r: Reader, value: Any, path: str, *, prompt_required: bool) -> LLMCall | None:
    spec = r.mapping(value, path, ("prompt", "fallback", "max_tokens", "timeout"), ("prompt",))
    if spec is None or "prompt" not in spec:
        return None
    prompt = r.text(spec["prompt"], join(path, "prompt"))
    fallback = r.text(spec["fallback"], join(path, "fallback")) if "fallback" in spec else None
    tokens, timeout = _llm_limits(r, spec, path)
    if prompt is None and prompt_required:
        return None
    return LLMCall(prompt, fallback, tokens, timeout)


def _llm_limits(r: Reader, spec: dict[str, Any], path: str) -> tuple[int, float]:
    tokens = 0
    if "max_tokens" in spec:
        tokens = r.integer(spec["max_tokens"], join(path, "max_tokens"), 1, limits.LLM_TOKENS) or 0
    timeout = 0.0
    if "timeout" in spec:
        where = join(path, "timeout")
        timeout = (
            r.bounded(r.duration(spec["timeout"], where, positive=True), where, limits.LLM_TIMEOUT)
            or 0.0
        )
    return tokens, timeout


def fallback(r: Reader, value: Any, path: str) -> Fallback | None:
    spec = r.mapping(value, path, ("llm", "text", "max_tokens", "timeout"))
    if spec is None:
        return None
    llm = r.boolean(spec["llm"], join(path, "llm")) if "llm" in spec else False
    text = (
        r.text(spec["text"], join(path, "text"), limit=limits.TEXT_BODY) if "text" in spec else None
    )
    if not llm and text is None and "text" not in spec:
        r.error(path, "says nothing: give it a `text`, or `llm: true`")
    tokens, timeout = _llm_limits(r, spec, path)
    return Fallback(llm, text, tokens, timeout)
