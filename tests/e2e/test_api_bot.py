"""A number's bot through the public api, with the whole stack: publish (YAML or JSON), read
it back, the next customer message answered by the new version, refusals naming the place,
other businesses' numbers 404, and the simulator sending and recording nothing."""

from __future__ import annotations

import json

from tests.e2e.api_support import Tenant, make_tenant, new_customer
from tests.e2e.harness import ApiAnswer, Running
from tests.support.fakes import wait_for

YAML = {"Content-Type": "application/yaml"}

V1 = """
version: 1
language: en
rules:
  - id: hours
    match: {any: ["opening hours", "orari"]}
    reply: {text: "Version one: we open at 9."}
  - id: support
    match: {any: [help]}
    flow: support
fallback:
  text: "Version one did not get that."
flows:
  support:
    steps:
      - {id: order, ask: "Your order number?", save: order, validate: {regex: "^[A-Z]-\\\\d+$"},
         retry: "Like A-123, please."}
    done:
      reply: "Thanks, order {{slots.order}} noted."
      actions: [{tag: support}, {emit: support_request}]
"""
V2 = V1.replace("Version one: we open at 9.", "Version two: we open at 10.")
INVALID = """
version: 1
language: en
rules:
  - {id: support, match: {any: [help]}, flow: support}
flows:
  support:
    steps:
      - {id: a, ask: "A?", save: a}
      - {id: b, ask: "B?", save: b}
      - {id: c, ask: "C?", save: c, validate: phone}
    done: {reply: "ok"}
"""


def put(tenant: Tenant, number: str, source: str, role: str = "admin") -> ApiAnswer:
    return tenant.call(
        "PUT", f"/v1/numbers/{number}/bot", raw=source.encode(), headers=YAML, role=role
    )


def answers_after(running: Running, tenant: Tenant, number: str, customer: str, text: str) -> str:
    """The customer writes `text`; the bot's next text to them."""
    before = len(running.graph.texts_to(customer))
    tenant.webhook(number, customer, text)
    wait_for(
        lambda: len(running.graph.texts_to(customer)) > before,
        timeout=20,
        message=f"the bot's answer to {text!r}",
    )
    return running.graph.texts_to(customer)[before]


def test_a_published_bot_answers_the_next_message_and_a_new_version_the_one_after(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    assert tenant.call("GET", f"/v1/numbers/{number}/bot").json["version"] == 0
    asked = len(running.openai.completions)
    first = put(tenant, number, V1)
    assert first.status == 200 and first.json == {"version": 1}, first
    customer = new_customer()
    assert answers_after(running, tenant, number, customer, "opening hours?") == (
        "Version one: we open at 9."
    )
    second = put(tenant, number, V2)
    assert second.json == {"version": 2}, second
    # The very next message, with no wait: the conversation reads the new version.
    assert answers_after(running, tenant, number, customer, "opening hours?") == (
        "Version two: we open at 10."
    )
    # The same definition again is the same version, not a third.
    assert put(tenant, number, V2).json == {"version": 2}
    got = tenant.call("GET", f"/v1/numbers/{number}/bot")
    assert got.status == 200 and got.json["version"] == 2
    assert got.json["source"] == V2 and got.json["content_type"] == "application/yaml"
    assert got.json["definition"]["rules"][0]["id"] == "hours"
    published = running.events(f"bot-{number}")
    assert [(t, d["version"]) for t, d in published] == [("BotPublished", 1), ("BotPublished", 2)]
    assert {d["business_id"] for _, d in published} == {tenant.id}
    # The LLM was never asked: the rules answered (the stack has an LLM key).
    assert len(running.openai.completions) == asked


def test_a_flow_runs_end_to_end_and_completes(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    assert put(tenant, number, V1).status == 200
    customer = new_customer()
    assert answers_after(running, tenant, number, customer, "help") == "Your order number?"
    assert answers_after(running, tenant, number, customer, "no idea") == "Like A-123, please."
    assert answers_after(running, tenant, number, customer, "B-7") == "Thanks, order B-7 noted."
    stream = "conversation-" + tenant.conversation_id(number, customer)
    [done] = [d for t, d in running.events(stream) if t == "FlowCompleted"]
    assert done["slots"] == {"order": "B-7"} and done["name"] == "support_request"


def test_json_is_taken_as_well_and_bad_definitions_are_422_naming_the_place(
    running: Running,
) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    as_json = {
        "version": 1,
        "language": "en",
        "rules": [{"id": "hi", "match": {"any": ["hi"]}, "reply": {"text": "Hello"}}],
    }
    answer = tenant.call("PUT", f"/v1/numbers/{number}/bot", as_json)
    assert answer.status == 200 and answer.json == {"version": 1}, answer
    assert tenant.call("GET", f"/v1/numbers/{number}/bot").json["content_type"] == (
        "application/json"
    )
    bad = put(tenant, number, INVALID)
    assert bad.status == 422, bad
    assert bad.json["error"]["code"] == "validation_failed"
    [field] = bad.json["error"]["fields"]
    assert field["path"] == "flows.support.steps[2].validate"
    assert "phone" in field["message"]
    unknown = put(tenant, number, V1 + "colour: blue\n")
    assert unknown.status == 422
    assert [f["path"] for f in unknown.json["error"]["fields"]] == ["colour"]
    not_yaml = put(tenant, number, "rules: [unclosed")
    assert not_yaml.status == 422 and not_yaml.json["error"]["fields"][0]["path"] == ""
    malformed = tenant.call("PUT", f"/v1/numbers/{number}/bot", raw=b"{not json")
    assert malformed.status == 400
    text = tenant.call(
        "PUT", f"/v1/numbers/{number}/bot", raw=b"x", headers={"Content-Type": "text/plain"}
    )
    assert text.status == 415 and text.json["error"]["code"] == "unsupported_media_type"
    # Nothing refused was published.
    assert tenant.call("GET", f"/v1/numbers/{number}/bot").json["version"] == 1


def test_another_business_and_other_roles(running: Running) -> None:
    ours, theirs = make_tenant(running, numbers=1), make_tenant(running, numbers=1)
    number = next(iter(theirs.numbers))
    assert put(theirs, number, V1).status == 200
    for method, path, body in (
        ("PUT", f"/v1/numbers/{number}/bot", None),
        ("GET", f"/v1/numbers/{number}/bot", None),
        ("POST", f"/v1/numbers/{number}/bot/simulate", {"messages": [{"text": "hi"}]}),
    ):
        if method == "PUT":
            answer = put(ours, number, V2)
        else:
            answer = ours.call(method, path, body)
        assert answer.status == 404 and answer.json["error"]["code"] == "not_found", answer
    assert put(theirs, number, V2, role="agent").status == 403
    assert theirs.call("GET", f"/v1/numbers/{number}/bot", role="viewer").status == 403
    # Their bot is untouched by our attempt.
    assert theirs.call("GET", f"/v1/numbers/{number}/bot").json["version"] == 1


def test_the_simulator_plays_messages_and_sends_and_records_nothing(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    path = f"/v1/numbers/{number}/bot/simulate"
    none = tenant.call("POST", path, {"messages": [{"text": "hi"}]})
    assert none.status == 409 and none.json["error"]["code"] == "no_bot"  # the LLM answers it
    assert put(tenant, number, V1).status == 200
    events_before_position = running.sql("SELECT max(global_position) AS p FROM events")[0]["p"]
    sent_before = len(running.graph.sent)
    answer = tenant.call(
        "POST",
        path,
        {
            "messages": [{"text": "help"}, {"text": "nope"}, {"text": "A-1"}, {"text": "orari"}],
            "contact": {"name": "Ada"},
            "at": "2026-12-01T10:00:00Z",
        },
    )
    assert answer.status == 200, answer
    texts = [[r["text"]["body"] for r in replies] for replies in answer.json["replies"]]
    assert texts == [
        ["Your order number?"],
        ["Like A-123, please."],
        ["Thanks, order A-1 noted."],
        ["Version one: we open at 9."],
    ]
    assert answer.json["state"]["flow"] == "" and answer.json["version"] == 1
    assert answer.json["contact"]["tags"] == ["support"]
    assert answer.json["handled_by"][0] == "rule:support"
    # A definition sent in the request, not published.
    tried = tenant.call("POST", path, {"messages": [{"text": "opening hours"}], "definition": V2})
    assert tried.json["replies"] == [
        [{"type": "text", "text": {"body": "Version two: we open at 10."}}]
    ]
    # The LLM is never called: its answer is given, or it fails and the fallback shows.
    llm = V1.replace("fallback:\n", "fallback:\n  llm: true\n")
    for extra, said in (
        ({}, "[the LLM's answer]"),
        ({"llm_answer": "We bake at dawn."}, "We bake at dawn."),
        ({"llm_fails": True}, "Version one did not get that."),
    ):
        run = tenant.call(
            "POST",
            path,
            {"messages": [{"text": "when do you bake"}], "definition": llm, **extra},
        )
        assert run.status == 200, run
        assert [r["text"]["body"] for r in run.json["replies"][0]] == [said], run.json
    bad = tenant.call("POST", path, {"messages": [{"text": "x"}], "definition": INVALID})
    assert bad.status == 422
    assert bad.json["error"]["fields"][0]["path"] == "definition.flows.support.steps[2].validate"
    wrong = tenant.call("POST", path, {"messages": [{"text": "x", "after": "soon"}]})
    assert wrong.status == 422 and wrong.json["error"]["fields"][0]["path"] == "messages[0].after"
    # Nothing sent, nothing recorded: a fence first, a real message whose answer comes after
    # the simulations, so anything they had sent would be there by now.
    fence = new_customer()
    answers_after(running, tenant, number, fence, "orari")
    assert [s for s in running.graph.sent[sent_before:] if s["to"] != fence] == []
    # Read through the store: the data is sealed in the table, where a LIKE finds nothing.
    fence_cid = tenant.conversation_id(number, fence)
    recorded = [
        type_
        for _, type_, data in running.events_after(events_before_position)
        if number in json.dumps(data)
        and fence not in json.dumps(data)
        and fence_cid not in json.dumps(data)  # the fence's own sends name its conversation
    ]
    assert recorded == []


def test_a_flow_left_unanswered_times_out_on_the_timer(running: Running) -> None:
    tenant = make_tenant(running, numbers=1)
    number = next(iter(tenant.numbers))
    quick = V1.replace(
        "  support:\n    steps:",
        '  support:\n    timeout: 2s\n    timeout_message: "Closed: write help to start again."\n'
        "    steps:",
    )
    assert put(tenant, number, quick).status == 200
    customer = new_customer()
    assert answers_after(running, tenant, number, customer, "help") == "Your order number?"
    # Nothing more from the customer: the timer ends the flow with its message.
    wait_for(
        lambda: len(running.graph.texts_to(customer)) == 2,
        timeout=20,
        message="the flow's timeout message",
    )
    assert running.graph.texts_to(customer)[1] == "Closed: write help to start again."
    conversation = tenant.conversation_id(number, customer)
    wait_for(
        lambda: (
            not running.sql(
                "SELECT 1 FROM conversation_bot_timers WHERE conversation_id = $1", conversation
            )
        ),
        message="the timer row removed once the flow ended",
    )
    # A fence: the next message is answered as outside any flow (a rule, not the step's retry),
    # and nothing else was sent before it (the timer fired once).
    assert answers_after(running, tenant, number, customer, "opening hours") == (
        "Version one: we open at 9."
    )
    assert running.graph.texts_to(customer) == [
        "Your order number?",
        "Closed: write help to start again.",
        "Version one: we open at 9.",
    ]
    kinds = [t for t, _ in running.events(f"conversation-{conversation}")]
    assert kinds.count("FlowTimedOut") == 1
