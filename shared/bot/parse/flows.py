"""Flows: their steps (`ask`, `say`, `llm`), how answers are validated, branches, the end."""

from __future__ import annotations

from typing import Any

from shared.bot import limits
from shared.bot.model import (
    DONE,
    END,
    AskStep,
    Branch,
    ButtonsMessage,
    Done,
    Flow,
    ListMessage,
    LLMStep,
    Message,
    Option,
    SayStep,
    Step,
    Template,
    Text,
    Validator,
)
from shared.bot.parse.messages import messages
from shared.bot.parse.reader import Reader, Scope
from shared.bot.parse.rules import _ids, actions, llm_call, match
from shared.bot.problems import join
from shared.bot.safe_regex import UnsafePattern, compile_safe
from shared.bot.text import fold

_ASK_KEYS = (
    "id",
    "ask",
    "save",
    "validate",
    "retry",
    "max_retries",
    "on_fail",
    "fail_message",
    "max_length",
    "branch",
    "next",
)
_VALIDATORS = ("text", "number", "email", "date", "choice", "regex")


def flows(r: Reader, value: Any, path: str) -> dict[str, Flow]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        r.error(path, "must be a mapping of flow names to flows")
        return {}
    out = {}
    for name, spec in value.items():
        where = join(path, str(name))
        r.declared_flows.add(str(name))
        if r.ident(name, where) is None:
            continue
        r.scope = Scope(flow=name)
        flow = _flow(r, name, spec, where)
        r.scope = Scope()
        if flow is not None:
            out[name] = flow
    return out


def _flow(r: Reader, name: str, value: Any, path: str) -> Flow | None:
    spec = r.mapping(value, path, ("steps", "timeout", "timeout_message", "done"), ("steps",))
    if spec is None or "steps" not in spec:
        return None
    timeout = (
        r.duration(spec["timeout"], join(path, "timeout"), positive=True)
        if "timeout" in spec
        else None
    )
    said = (
        messages(r, spec["timeout_message"], join(path, "timeout_message"))
        if "timeout_message" in spec
        else ()
    )
    if said and timeout is None and "timeout" not in spec:
        r.error(join(path, "timeout_message"), "needs a `timeout`")
    done = _done(r, spec["done"], join(path, "done")) if "done" in spec else Done()
    items = spec["steps"]
    if not isinstance(items, list) or not items:
        r.error(join(path, "steps"), "must be a non-empty list of steps")
        return None
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        where = join(join(path, "steps"), i)
        step = _step(r, item, where)
        if step is None:
            continue
        if step.id in seen:
            r.error(join(where, "id"), f"`{step.id}` is already the id of steps[{seen[step.id]}]")
            continue
        seen[step.id] = i
        steps.append(step)
    if len(steps) != len(items):
        return None  # the checks of a flow need every step
    return Flow(name, tuple(steps), timeout, said, done)


def _done(r: Reader, value: Any, path: str) -> Done:
    spec = r.mapping(value, path, ("reply", "actions"))
    if spec is None:
        return Done()
    reply = messages(r, spec["reply"], join(path, "reply")) if "reply" in spec else ()
    acts = actions(r, spec["actions"], join(path, "actions"), llm=True) if "actions" in spec else ()
    return Done(reply, acts)


def _step(r: Reader, value: Any, path: str) -> Step | None:
    if not isinstance(value, dict):
        r.error(path, "must be a mapping")
        return None
    kinds = [k for k in ("ask", "say", "llm") if k in value]
    if len(kinds) != 1:
        what = " and ".join(kinds) if kinds else "none"
        r.error(path, f"a step does one of `ask`, `say` or `llm` (this one: {what})")
        return None
    if kinds == ["say"]:
        spec = r.mapping(value, path, ("id", "say", "next"), ("id",))
        ident = r.ident(spec.get("id"), join(path, "id")) if spec and "id" in spec else None
        said = messages(r, value["say"], join(path, "say"))
        if ident is None or not said:
            return None
        return SayStep(ident, said, _next(r, value, path))
    if kinds == ["llm"]:
        spec = r.mapping(value, path, ("id", "llm", "next"), ("id",))
        ident = r.ident(spec.get("id"), join(path, "id")) if spec and "id" in spec else None
        call = llm_call(r, value["llm"], join(path, "llm"), prompt_required=True)
        if ident is None or call is None:
            return None
        return LLMStep(ident, call, _next(r, value, path))
    return _ask(r, value, path)


def _next(r: Reader, spec: dict[str, Any], path: str) -> str:
    if "next" not in spec:
        return ""
    return r.ident(spec["next"], join(path, "next")) or ""


def _ask(r: Reader, value: Any, path: str) -> AskStep | None:
    spec = r.mapping(value, path, _ASK_KEYS, ("id",))
    if spec is None:
        return None
    ident = r.ident(spec["id"], join(path, "id")) if "id" in spec else None
    asked = messages(r, spec["ask"], join(path, "ask"))
    save = (r.ident(spec["save"], join(path, "save")) or "") if "save" in spec else ""
    validator = Validator()
    if "validate" in spec:
        validator = (
            _validator(r, spec["validate"], join(path, "validate"), _offered(asked)) or validator
        )
    retry = messages(r, spec["retry"], join(path, "retry")) if "retry" in spec else ()
    fail = (
        messages(r, spec["fail_message"], join(path, "fail_message"))
        if "fail_message" in spec
        else ()
    )
    retries = 3
    if "max_retries" in spec:
        found = r.integer(spec["max_retries"], join(path, "max_retries"), 0, limits.MAX_RETRIES)
        retries = found if found is not None else retries
    on_fail = "handoff"
    if "on_fail" in spec:
        if spec["on_fail"] in ("handoff", "end"):
            on_fail = spec["on_fail"]
        else:
            r.error(join(path, "on_fail"), "must be `handoff` or `end`")
    length = 1000
    if "max_length" in spec:
        found = r.integer(spec["max_length"], join(path, "max_length"), 1, limits.MAX_LENGTH)
        length = found if found is not None else length
    branches = _branches(r, spec["branch"], join(path, "branch")) if "branch" in spec else ()
    if ident is None or not asked:
        return None
    return AskStep(
        id=ident,
        ask=asked,
        save=save,
        validate=validator,
        retry=retry,
        max_retries=retries,
        on_fail=on_fail,  # type: ignore[arg-type]
        fail_message=fail,
        max_length=length,
        branch=branches,
        next=_next(r, spec, path),
    )


def _offered(asked: tuple[Message, ...]) -> tuple[Option, ...]:
    """The options a question's buttons or list offer."""
    for message in asked:
        if isinstance(message, ButtonsMessage):
            return message.options
        if isinstance(message, ListMessage):
            return tuple(row for section in message.sections for row in section.rows)
    return ()


def _validator(r: Reader, value: Any, path: str, offered: tuple[Option, ...]) -> Validator | None:
    if isinstance(value, str):
        kind, options = value, None
    elif isinstance(value, dict) and len(value) == 1:
        [(kind, options)] = value.items()
    else:
        r.error(path, f"must be one of {', '.join(_VALIDATORS)} (or a mapping with one of them)")
        return None
    if kind not in _VALIDATORS:
        r.error(path, f"`{kind}` is not a validation (known: {', '.join(_VALIDATORS)})")
        return None
    where = join(path, kind) if isinstance(value, dict) else path
    if kind == "regex":
        pattern = r.string(options, where) if options is not None else None
        if options is None:
            r.error(path, 'a regex validation needs its pattern: `{regex: "..."}`')
        if pattern is None:
            return None
        try:
            compile_safe(pattern)
        except UnsafePattern as exc:
            r.error(where, str(exc))
            return None
        return Validator("regex", regex=pattern)
    if kind == "choice":
        choices = _choices(r, options, where) if options is not None else offered
        if not choices:
            if options is None:
                r.error(
                    path, "a choice needs its options: list them, or ask with buttons or a list"
                )
            return None
        return Validator("choice", choices=choices)
    if kind == "number":
        return _number(r, options, where)
    if options is not None:
        r.error(where, f"`{kind}` takes no options")
    return Validator(kind)  # type: ignore[arg-type]


def _choices(r: Reader, value: Any, path: str) -> tuple[Option, ...]:
    out = []
    for i, item in enumerate(value if isinstance(value, list) else [value]):
        where = join(path, i) if isinstance(value, list) else path
        if isinstance(item, dict):
            spec = r.mapping(item, where, ("id", "title"), ("id", "title"))
            if spec and "id" in spec and "title" in spec:
                ident = r.string(str(spec["id"]), join(where, "id"))
                title = r.text(spec["title"], join(where, "title"))
                if ident and title:
                    out.append(Option(ident, title))
            continue
        item = str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item
        name = r.string(item, where)
        if name:
            out.append(Option(name, Text({"": Template(name, (name,))})))
    return tuple(out)


def _number(r: Reader, value: Any, path: str) -> Validator | None:
    if value is None:
        return Validator("number")
    spec = r.mapping(value, path, ("min", "max", "integer"))
    if spec is None:
        return None
    low = r.number(spec["min"], join(path, "min")) if "min" in spec else None
    high = r.number(spec["max"], join(path, "max")) if "max" in spec else None
    whole = r.boolean(spec["integer"], join(path, "integer")) if "integer" in spec else False
    if low is not None and high is not None and low > high:
        r.error(path, "`min` is above `max`")
    return Validator("number", minimum=low, maximum=high, integer=whole)


def _branches(r: Reader, value: Any, path: str) -> tuple[Branch, ...]:
    if not isinstance(value, list) or not value:
        r.error(
            path,
            "must be a non-empty list of `{match: ..., goto: step}` or `{value: ..., goto: step}`",
        )
        return ()
    out = []
    for i, item in enumerate(value):
        where = join(path, i)
        spec = r.mapping(item, where, ("match", "value", "goto"), ("goto",))
        if spec is None or "goto" not in spec:
            continue
        goto = r.ident(spec["goto"], join(where, "goto"))
        if ("match" in spec) == ("value" in spec):
            r.error(where, "a branch has `match` (on the message) or `value` (on the answer)")
            continue
        found = match(r, spec["match"], join(where, "match")) if "match" in spec else None
        values = (
            tuple(fold(v) for v in _ids(r, spec["value"], join(where, "value")))
            if "value" in spec
            else ()
        )
        if goto is not None and (found is not None or values):
            out.append(Branch(goto, found, values))
    return tuple(out)


TARGETS = (DONE, END)
