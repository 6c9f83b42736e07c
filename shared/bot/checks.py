"""The checks that need the whole definition: names that refer to other parts (flows,
steps, rules, slots, regex groups), flows that cannot end, and at most one LLM call per
turn. Pure."""

from __future__ import annotations

import re

from shared.bot.model import (
    DONE,
    END,
    AskStep,
    Definition,
    Flow,
    LLMAction,
    LLMStep,
    Step,
)
from shared.bot.parse.reader import Reader
from shared.bot.problems import Problem, join
from shared.bot.templates import variables
from shared.bot.text import fold

_TARGETS = (DONE, END)


def check(definition: Definition, r: Reader) -> list[Problem]:
    problems: list[Problem] = []
    problems += _rule_references(definition, r)
    for name, flow in definition.flows.items():
        problems += _flow(flow, join("flows", name))
    problems += _variables(definition, r)
    return problems


def _rule_references(definition: Definition, r: Reader) -> list[Problem]:
    out = []
    flows = sorted(r.declared_flows)
    for i, rule in r.rule_at.items():
        if rule.flow and rule.flow not in r.declared_flows:
            known = f" (flows: {', '.join(flows)})" if flows else " (there are no flows)"
            out.append(Problem(join(join("rules", i), "flow"), f"no flow `{rule.flow}`{known}"))
    hours = definition.business_hours
    if hours:
        for j, ident in enumerate(hours.outside_hours):
            if ident != "fallback" and ident not in r.declared_rules:
                where = join("business_hours.outside_hours", j)
                out.append(Problem(where, f"no rule `{ident}` (nor `fallback`)"))
    return out


def _flow(flow: Flow, path: str) -> list[Problem]:
    out: list[Problem] = []
    ids = {s.id for s in flow.steps}
    saved: dict[str, str] = {}
    for j, step in enumerate(flow.steps):
        where = join(join(path, "steps"), j)
        if step.id in _TARGETS:
            out.append(Problem(join(where, "id"), f"`{step.id}` is reserved: it ends the flow"))
        if step.next and step.next not in ids and step.next not in _TARGETS:
            out.append(Problem(join(where, "next"), _no_step(step.next, flow)))
        if isinstance(step, AskStep):
            out += _ask(step, where, flow, ids, saved)
    if out:
        return out  # the graph below needs its names right
    edges = {s.id: _edges(flow, s) for s in flow.steps}
    ending = _reaching_end(edges)
    reached = _reached(edges, flow.steps[0].id)
    for j, step in enumerate(flow.steps):
        where = join(join(path, "steps"), j)
        if step.id not in reached:
            out.append(Problem(where, f"no step leads to `{step.id}`: it is never asked"))
        elif step.id not in ending:
            out.append(Problem(where, "loops with no exit: no path from here ends the flow"))
    if not out:
        out += _llm_calls(flow, path)
    return out


def _ask(
    step: AskStep, where: str, flow: Flow, ids: set[str], saved: dict[str, str]
) -> list[Problem]:
    out = []
    if step.save:
        if step.save in saved:
            out.append(
                Problem(
                    join(where, "save"),
                    f"slot `{step.save}` is already saved by step `{saved[step.save]}`",
                )
            )
        else:
            saved[step.save] = step.id
    choices = {fold(o.id) for o in step.validate.choices}
    for k, branch in enumerate(step.branch):
        at = join(join(where, "branch"), k)
        if branch.goto not in ids and branch.goto not in _TARGETS:
            out.append(Problem(join(at, "goto"), _no_step(branch.goto, flow)))
        if choices:
            for value in branch.values:
                if value not in choices:
                    out.append(
                        Problem(join(at, "value"), f"`{value}` is not one of the step's choices")
                    )
    return out


def _no_step(name: str, flow: Flow) -> str:
    steps = ", ".join(s.id for s in flow.steps)
    return f"no step `{name}` in this flow (steps: {steps}; or `done`, `end`)"


def _edges(flow: Flow, step: Step) -> list[str]:
    """Where a step can go next. A failed answer's `on_fail` is no exit: a flow whose
    answers are all valid would never end."""
    out = [flow.after(step)]
    if isinstance(step, AskStep):
        out += [b.goto for b in step.branch]
    return out


def _reaching_end(edges: dict[str, list[str]]) -> set[str]:
    ending: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node, targets in edges.items():
            if node not in ending and any(t in _TARGETS or t in ending for t in targets):
                ending.add(node)
                changed = True
    return ending


def _reached(edges: dict[str, list[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in _TARGETS and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _llm_calls(flow: Flow, path: str) -> list[Problem]:
    """A turn runs from an answer (or the flow's start) through `say` and `llm` steps to the
    next question or the end: at most one LLM call on the way."""
    starts = {flow.steps[0].id}
    for step in flow.steps:
        if isinstance(step, AskStep):
            starts.update(_edges(flow, step))
    done_calls = sum(isinstance(a, LLMAction) for a in flow.done.actions)
    index = {s.id: j for j, s in enumerate(flow.steps)}
    out: list[Problem] = []
    for start in sorted(starts):
        calls, at = 0, start
        while at not in _TARGETS:
            step = flow.step(at)
            if step is None or isinstance(step, AskStep):
                break
            if isinstance(step, LLMStep):
                calls += 1
                if calls > 1:
                    where = join(join(path, "steps"), index[at])
                    out.append(
                        Problem(where, "a second LLM call in one turn: ask something between")
                    )
                    break
            at = flow.after(step)
        if at == DONE and calls and done_calls:
            out.append(
                Problem(
                    join(path, "done.actions"),
                    "an LLM call right after an `llm` step: ask something between",
                )
            )
    return list(dict.fromkeys(out))


def _variables(definition: Definition, r: Reader) -> list[Problem]:
    saved = {
        name: {s.save for s in flow.steps if isinstance(s, AskStep) and s.save}
        for name, flow in definition.flows.items()
    }
    out = []
    for written in r.written:
        scope = written.scope
        if scope.flow and scope.flow not in definition.flows:
            continue  # a flow with problems of its own
        if scope.rule >= 0 and scope.rule not in r.rule_at:
            continue
        for var in variables(written.template):
            name = "{{" + ".".join(var.path) + "}}"
            if var.path[0] == "slots":
                if not scope.flow:
                    out.append(
                        Problem(written.path, f"`{name}`: slots are known only inside their flow")
                    )
                elif var.path[1] not in saved[scope.flow]:
                    out.append(
                        Problem(written.path, f"`{name}`: no step of flow `{scope.flow}` saves it")
                    )
            elif var.path[0] == "match":
                rule = r.rule_at.get(scope.rule)
                groups = (
                    re.compile(rule.match.regex).groupindex if rule and rule.match.regex else {}
                )
                if var.path[1] not in groups:
                    out.append(
                        Problem(
                            written.path,
                            f"`{name}`: only a rule's regex group `(?P<{var.path[1]}>...)` sets it",
                        )
                    )
    return out
