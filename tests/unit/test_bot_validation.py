"""Validation of bot definitions: every error names its place and its reason, and the
valid examples (the contract's and the shipped default) have none."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from shared.bot import InvalidDefinition, Problem, load, problems

ROOT = Path(__file__).resolve().parents[2]

CONTRACT = textwrap.dedent(
    """
    version: 1
    language: en
    persona: "You are the assistant of Bottega Rossi, a bakery in Bologna."
    business_hours:
      timezone: Europe/Rome
      weekly:
        mon: ["09:00-13:00", "15:00-19:00"]
        sat: ["09:00-13:00"]
      holidays: ["2026-12-25", "2026-12-26"]
      away_message: {en: "We're closed now; we'll answer from {{business.next_open}}.",
                     it: "Siamo chiusi; rispondiamo da {{business.next_open}}."}
      away_every: 12h
      outside_hours: [hours, human]
    rules:
      - id: greeting
        match: {any: ["ciao", "salve", "buongiorno", "hi", "hello"]}
        reply: {text: {en: "Hi {{contact.name}}! How can I help?", it: "Ciao {{contact.name}}!"}}
      - id: hours
        match: {any: ["orari", "opening hours", "when are you open"]}
        reply: {text: "We're open {{business.hours}}."}
      - id: menu
        match: {any: ["menu"]}
        reply:
          buttons:
            body: "What do you need?"
            options: [{id: support, title: "Support"}, {id: sales, title: "Sales"}]
      - id: support
        match: {any: ["aiuto", "assistenza", "problema", "help"], button: support}
        flow: support
      - id: human
        match: {any: ["operatore", "agent", "human", "persona"]}
        reply: {text: "I'm passing you to a colleague."}
        handoff: true
        interrupt: true
      - id: price
        match: {regex: "\\\\bprice of (?P<item>\\\\w+)"}
        reply: {text: "Ask in the shop for the price of {{match.item}}."}
    fallback:
      llm: true
      text: "Sorry, I didn't get that. Write 'menu' to see what I can do."
    flows:
      support:
        timeout: 30m
        timeout_message: "I'll close this request; write 'help' to start again."
        steps:
          - id: name
            ask: "What's your name?"
            save: name
          - id: order
            ask: "Your order number, please (like A-123)."
            validate: {regex: "^[A-Z]-\\\\d+$"}
            retry: "That doesn't look like an order number: write it like A-123."
            max_retries: 3
            save: order
          - id: problem
            ask: "What went wrong?"
            save: problem
        done:
          reply: "Thanks {{slots.name}}, we opened a ticket for order {{slots.order}}."
          actions:
            - tag: support
            - attribute: {last_order: "{{slots.order}}"}
            - emit: support_request
    """
)


def edited(change: str) -> str:
    """The contract's example with one change: `path = yaml value` (dots and [i])."""
    data = yaml.safe_load(CONTRACT)
    path, _, value = change.partition(" = ")
    *parents, last = _keys(path)
    node = data
    for key in parents:
        node = node[key]
    if value == "DELETE":
        del node[last]
    else:
        node[last] = yaml.safe_load(value)
    return json.dumps(data)


def _keys(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        if name:
            out.append(name)
        out += [int(i.rstrip("]")) for i in indexes]
    return out


def test_the_contract_example_and_the_default_bot_are_valid() -> None:
    assert problems(CONTRACT) == []
    assert problems((ROOT / "deploy/bots/default.yaml").read_text()) == []
    load(CONTRACT)


def test_json_is_read_like_yaml() -> None:
    assert problems(json.dumps(yaml.safe_load(CONTRACT))) == []


# (change to the contract's example, the path named, a part of the message)
CASES = [
    ("rules[0].mtach = {any: [x]}", "rules[0].mtach", "did you mean `match`"),
    ("colour = red", "colour", "unknown key"),
    ("flows.support.steps[1].validat = text", "flows.support.steps[1].validat", "unknown key"),
    ("rules[3].flow = billing", "rules[3].flow", "no flow `billing`"),
    ("flows.support.steps[2].save = name", "flows.support.steps[2].save", "already saved"),
    ("flows.support.done.reply = 'Hi {{slots.email}}'", "flows.support.done.reply", "no step"),
    ("rules[0].reply = {text: 'Hi {{slots.name}}'}", "rules[0].reply.text", "only inside"),
    ("rules[0].reply = {text: 'Hi {{match.item}}'}", "rules[0].reply.text", "group `(?P<item>"),
    ("rules[5].reply = {text: '{{match.thing}}'}", "rules[5].reply.text", "group `(?P<thing>"),
    ("rules[0].reply = {text: 'Hi {{contact.nam}}'}", "rules[0].reply.text", "unknown variable"),
    ("rules[0].reply = {text: 'Hi {{contact.name'}", "rules[0].reply.text", "not closed"),
    ("rules[5].match = {regex: '(unclosed'}", "rules[5].match.regex", "does not compile"),
    ("rules[5].match = {regex: '(a+)+$'}", "rules[5].match.regex", "catastrophically"),
    (
        "flows.support.steps[1].validate = {regex: '(\\w+\\s?)+$'}",
        "flows.support.steps[1].validate.regex",
        "catastrophically",
    ),
    (
        "rules[2].reply.buttons.options = [{id: a, title: A}, {id: b, title: B}, "
        "{id: c, title: C}, {id: d, title: D}]",
        "rules[2].reply.buttons.options",
        "at most 3",
    ),
    (
        "rules[2].reply.buttons.options[0].title = 'A title longer than twenty'",
        "rules[2].reply.buttons.options[0].title",
        "at most 20",
    ),
    (
        "rules[2].reply.buttons.options[1].id = support",
        "rules[2].reply.buttons.options[1].id",
        "already the id",
    ),
    ("business_hours.weekly.mon = ['9-13']", "business_hours.weekly.mon[0]", "not a range"),
    ("business_hours.weekly.mon = ['13:00-09:00']", "business_hours.weekly.mon[0]", "not a range"),
    ("business_hours.weekly.mon = ['22:00-02:00']", "business_hours.weekly.mon[0]", "midnight"),
    ("business_hours.weekly.mon = ['24:00-24:00']", "business_hours.weekly.mon[0]", "not a range"),
    ("business_hours.weekly.mon = ['09:60-10:00']", "business_hours.weekly.mon[0]", "not a range"),
    (
        "business_hours.weekly.mon = ['09:00-13:00', '12:00-14:00']",
        "business_hours.weekly.mon",
        "overlap",
    ),
    ("business_hours.weekly.funday = ['09:00-10:00']", "business_hours.weekly.funday", "unknown"),
    ("business_hours.timezone = Europe/Bologna", "business_hours.timezone", "not a time zone"),
    ("business_hours.holidays = ['2026-02-30']", "business_hours.holidays[0]", "not a day"),
    ("business_hours.away_every = soon", "business_hours.away_every", "not a duration"),
    (
        "business_hours.outside_hours = [hours, nobody]",
        "business_hours.outside_hours[1]",
        "no rule",
    ),
    ("flows.support.timeout = forever", "flows.support.timeout", "not a duration"),
    ("flows.support.steps[1].max_retries = 99", "flows.support.steps[1].max_retries", "between"),
    ("flows.support.steps[1].on_fail = retry", "flows.support.steps[1].on_fail", "handoff"),
    ("flows.support.steps[1].max_length = 0", "flows.support.steps[1].max_length", "between"),
    ("flows.support.steps[1].validate = zipcode", "flows.support.steps[1].validate", "not a valid"),
    ("flows.support.steps[1].validate = regex", "flows.support.steps[1].validate", "pattern"),
    ("flows.support.steps[1].validate = choice", "flows.support.steps[1].validate", "options"),
    (
        "flows.support.steps[1].validate = {number: {min: 5, max: 1}}",
        "flows.support.steps[1].validate.number",
        "above",
    ),
    ("flows.support.steps[1].next = nowhere", "flows.support.steps[1].next", "no step `nowhere`"),
    (
        "flows.support.steps[0].branch = [{value: x, goto: nowhere}]",
        "flows.support.steps[0].branch[0].goto",
        "no step",
    ),
    (
        "flows.support.steps[0].branch = [{goto: order}]",
        "flows.support.steps[0].branch[0]",
        "`match`",
    ),
    ("flows.support.steps[2].next = name", "flows.support.steps[0]", "loops with no exit"),
    ("flows.support.steps[1].next = order", "flows.support.steps[1]", "loops with no exit"),
    ("flows.support.steps[0].next = problem", "flows.support.steps[1]", "never asked"),
    ("flows.support.steps[1].id = name", "flows.support.steps[1].id", "already the id"),
    ("flows.support.steps[1].id = done", "flows.support.steps[1].id", "reserved"),
    ("flows.support.steps = []", "flows.support.steps", "non-empty"),
    ("flows.support.steps[0].say = Hello", "flows.support.steps[0]", "one of `ask`, `say`"),
    ("rules[0].reply = {template: {language: en}}", "rules[0].reply.template.name", "name"),
    (
        "rules[0].reply = {template: {name: 'Order Update'}}",
        "rules[0].reply.template.name",
        "lower",
    ),
    ("rules[0].reply = {text: Hi, buttons: {body: x}}", "rules[0].reply", "not text and buttons"),
    ("rules[1].id = greeting", "rules[1].id", "already the id of rules[0]"),
    ("rules[1].id = fallback", "rules[1].id", "reserved"),
    ("rules[1].id = 'two words'", "rules[1].id", "not allowed"),
    ("rules[1].match = {}", "rules[1].match", "must say what to match"),
    ("rules[1].match = {any: ['!!']}", "rules[1].match.any[0]", "no words"),
    ("rules[1].match = {kind: selfie}", "rules[1].match.kind", "not a kind"),
    ("rules[1].match = {any: {english: [hi]}}", "rules[1].match.any.english", "language code"),
    ("rules[1].reply = DELETE", "rules[1]", "does nothing"),
    ("rules[3].handoff = true", "rules[3]", "both `handoff` and `flow`"),
    ("rules[0].end_flow = true", "rules[0].end_flow", "interrupt"),
    ("rules[0].interrupt = 'yes'", "rules[0].interrupt", "true or false"),
    ("rules[0].priority = high", "rules[0].priority", "whole number"),
    ("rules[0].languages = [english]", "rules[0].languages[0]", "language code"),
    ("rules[0].reply = {text: {it: Ciao}}", "rules[0].reply.text", "language `en`"),
    ("rules[0].reply = {text: {en: Hi, italian: Ciao}}", "rules[0].reply.text.italian", "code"),
    ("rules[0].reply = ''", "rules[0].reply", "empty"),
    ("rules[0].actions = [{tag: a, untag: b}]", "rules[0].actions[0]", "one action per item"),
    ("rules[0].actions = [{llm: {prompt: x}}]", "rules[0].actions[0].llm", "flow's `done`"),
    ("rules[0].actions = [{opt_out: false}]", "rules[0].actions[0].opt_out", "true"),
    ("rules[0].actions = [{attribute: {}}]", "rules[0].actions[0].attribute", "at least one"),
    ("rules[0].actions = [{shout: loud}]", "rules[0].actions[0].shout", "unknown key"),
    (
        "flows.support.done.actions = [{llm: {prompt: a}}, {llm: {prompt: b}}]",
        "flows.support.done.actions",
        "at most one",
    ),
    ("fallback = {llm: false}", "fallback", "says nothing"),
    ("fallback.timeout = 10m", "fallback.timeout", "at most 120"),
    ("fallback.max_tokens = 0", "fallback.max_tokens", "between"),
    ("version = 2", "version", "version 1"),
    ("language = English", "language", "not a language code"),
    ("llm = {history: 500}", "llm.history", "between"),
    ("opt_out = {stop: [stop], start: [stop]}", "opt_out", "both a stop and a start"),
    ("flows.support.timeout_message = {}", "flows.support.timeout_message", "must be text"),
]


@pytest.mark.parametrize(("change", "path", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_error_names_its_place_and_reason(change: str, path: str, message: str) -> None:
    found = problems(edited(change))
    assert any(p.path == path and message in p.message for p in found), found


def test_a_list_with_too_many_rows_in_all_sections() -> None:
    rows = [{"id": f"r{i}", "title": f"Row {i}"} for i in range(6)]
    more = [{"id": f"s{i}", "title": f"Row {i}"} for i in range(5)]
    reply = {
        "list": {
            "body": "Pick one",
            "button": "Choose",
            "sections": [{"title": "A", "rows": rows}, {"title": "B", "rows": more}],
        }
    }
    found = problems(edited(f"rules[2].reply = {json.dumps(reply)}"))
    assert Problem("rules[2].reply.list.sections", found[0].message) in found
    assert "11 rows" in found[0].message


def test_a_list_row_title_over_24_and_sections_without_titles() -> None:
    reply = {
        "list": {
            "body": "Pick",
            "button": "Choose",
            "sections": [
                {"rows": [{"id": "a", "title": "x" * 25}]},
                {"rows": [{"id": "b", "title": "B"}]},
            ],
        }
    }
    found = problems(edited(f"rules[2].reply = {json.dumps(reply)}"))
    paths = {p.path for p in found}
    assert "rules[2].reply.list.sections[0].rows[0].title" in paths
    assert "rules[2].reply.list.sections[0].title" in paths


def test_a_list_of_ten_rows_is_fine() -> None:
    rows = [{"id": f"r{i}", "title": f"Row {i}"} for i in range(10)]
    reply = {"list": {"body": "Pick one", "button": "Choose", "rows": rows}}
    assert problems(edited(f"rules[2].reply = {json.dumps(reply)}")) == []


def test_a_cta_url_needs_a_web_address() -> None:
    reply = {"cta_url": {"body": "See", "text": "Open", "url": "ftp://example.com"}}
    found = problems(edited(f"rules[2].reply = {json.dumps(reply)}"))
    assert [p.path for p in found] == ["rules[2].reply.cta_url.url"]


def test_every_problem_is_reported_at_once() -> None:
    data = yaml.safe_load(CONTRACT)
    data["rules"][0]["mtach"] = {}
    data["rules"][3]["flow"] = "billing"
    data["business_hours"]["weekly"]["sat"] = ["9-13"]
    paths = {p.path for p in problems(json.dumps(data))}
    assert {"rules[0].mtach", "rules[3].flow", "business_hours.weekly.sat[0]"} <= paths


def test_a_broken_flow_does_not_also_count_as_missing() -> None:
    found = problems(edited("flows.support.steps[0].ask = DELETE"))
    assert all(p.path.startswith("flows.support") for p in found), found


def test_load_raises_with_the_problems() -> None:
    with pytest.raises(InvalidDefinition) as raised:
        load(edited("rules[3].flow = billing"))
    assert raised.value.problems[0].path == "rules[3].flow"
    assert "rules[3].flow" in str(raised.value)


def test_a_definition_that_is_not_a_mapping() -> None:
    assert problems("- just\n- a list\n") == [Problem("", "must be a mapping, not a list")]


def test_two_llm_calls_in_one_turn_are_refused() -> None:
    flow = {
        "steps": [
            {"id": "a", "llm": {"prompt": "one"}},
            {"id": "b", "llm": {"prompt": "two"}},
            {"id": "c", "ask": "ok?"},
        ]
    }
    found = problems(edited(f"flows.support = {json.dumps(flow)}"))
    assert [p.path for p in found] == ["flows.support.steps[1]"]
    assert "second LLM call" in found[0].message


def test_an_llm_step_straight_into_an_llm_done_action_is_refused() -> None:
    flow = {
        "steps": [
            {"id": "a", "ask": "ok?", "save": "x"},
            {"id": "b", "llm": {"prompt": "{{slots.x}}"}},
        ],
        "done": {"actions": [{"llm": {"prompt": "again"}}]},
    }
    found = problems(edited(f"flows.support = {json.dumps(flow)}"))
    assert [p.path for p in found] == ["flows.support.done.actions"]


def test_say_steps_that_loop_never_wait_and_are_refused() -> None:
    flow = {
        "steps": [{"id": "a", "say": "one", "next": "b"}, {"id": "b", "say": "two", "next": "a"}]
    }
    found = problems(edited(f"flows.support = {json.dumps(flow)}"))
    assert {p.path for p in found} == {"flows.support.steps[0]", "flows.support.steps[1]"}
    assert all("loops with no exit" in p.message for p in found)


def test_a_loop_with_a_branch_out_is_fine() -> None:
    flow = {
        "steps": [
            {
                "id": "again",
                "ask": "Another?",
                "validate": {"choice": ["yes", "no"]},
                "branch": [{"value": "no", "goto": "done"}],
                "next": "again",
            }
        ]
    }
    assert problems(edited(f"flows.support = {json.dumps(flow)}")) == []


def test_a_branch_value_must_be_one_of_the_choices() -> None:
    flow = {
        "steps": [
            {
                "id": "q",
                "ask": "Yes or no?",
                "validate": {"choice": ["yes", "no"]},
                "branch": [{"value": "maybe", "goto": "done"}],
            }
        ]
    }
    found = problems(edited(f"flows.support = {json.dumps(flow)}"))
    assert [p.path for p in found] == ["flows.support.steps[0].branch[0].value"]
