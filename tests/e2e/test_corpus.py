"""Every real webhook payload of the pywa corpus, through the whole running pipeline."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.harness import Running, load_fixtures, new_customer, uniquify
from tests.support.fakes import wait_for

# What the bot answers: anything a person wrote, sent, picked or shared. It stays silent on
# reactions, edits, deletions, system notices and whatever it cannot read.
ANSWERED_TYPES = {
    "text",
    "image",
    "video",
    "document",
    "audio",
    "sticker",
    "location",
    "contacts",
    "order",
    "button",
}
ANSWERED_INTERACTIVE = {"button_reply", "list_reply", "nfm_reply"}
# The conversation event each silent kind must still leave behind.
SILENT_EVENTS = {
    "reaction": "CustomerReacted",
    "edit": "CustomerEdited",
    "revoke": "CustomerDeleted",
    "system": "SystemNotice",
}


@dataclass
class Case:
    name: str
    payload: dict[str, Any]
    customer: str
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (phone id, msg)
    statuses: list[str] = field(default_factory=list)  # wamids
    changes: list[tuple[str, str]] = field(default_factory=list)  # (waba id, field)
    echoes: list[str] = field(default_factory=list)  # wamids the business sent from its phone
    preferences: list[tuple[str, str]] = field(default_factory=list)  # (waba id, wa_id)


def answered(message: dict[str, Any]) -> bool:
    kind = message.get("type")
    if kind == "interactive":
        return (message.get("interactive") or {}).get("type") in ANSWERED_INTERACTIVE
    return kind in ANSWERED_TYPES


def prepare(name: str, fixture: dict[str, Any]) -> Case:
    customer = new_customer()
    payload = uniquify(fixture, customer)
    case = Case(name, payload, customer)
    for entry in payload["entry"]:
        # A fresh business account per case, so each change has its own stream to look in.
        entry["id"] = "8" + str(uuid.uuid4().int)[:14]
        for change in entry["changes"]:
            value = change.get("value")
            if change.get("field") == "smb_message_echoes" and isinstance(value, dict):
                case.echoes += [e["id"] for e in value.get("message_echoes") or []]
                continue
            if change.get("field") == "user_preferences" and isinstance(value, dict):
                case.preferences += [(entry["id"], p["wa_id"]) for p in value["user_preferences"]]
                continue
            if change.get("field") != "messages" or not isinstance(value, dict):
                case.changes.append((entry["id"], change.get("field")))
                continue
            phone = value["metadata"]["phone_number_id"]
            case.messages += [(phone, m) for m in value.get("messages") or []]
            case.statuses += [s["id"] for s in value.get("statuses") or []]
            if value.get("errors"):
                case.changes.append((entry["id"], "messages.errors"))
    return case


def stream_types(bot: Running, stream: str) -> list[str]:
    return [t for t, _ in bot.events(stream)]


def test_every_corpus_payload_is_accepted_recorded_and_answered_as_it_should(
    bot: Running,
) -> None:
    cases = [prepare(name, fixture) for name, fixture in load_fixtures().items()]
    assert len(cases) == 74

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda c: bot.post(c.payload)[0], cases))
    assert dict(zip([c.name for c in cases], statuses, strict=True)) == {c.name: 200 for c in cases}

    talk = [c for c in cases if any(answered(m) for _, m in c.messages)]
    silent = [c for c in cases if c.messages and c not in talk]
    # The corpus has both kinds; the test would prove little otherwise.
    assert len(talk) >= 15 and len(silent) >= 8

    # Every customer who said something gets an answer.
    def all_answered() -> bool:
        return all(bot.graph.sent_to(c.customer) for c in talk)

    wait_for(all_answered, timeout=60, message="a reply to every answerable corpus message")

    # Every item landed where it belongs.
    for case in cases:
        for phone, message in case.messages:
            inbox = bot.events("inbox-" + bot.conversation_id(phone, case.customer))
            assert [d["wamid"] for t, d in inbox if t == "MessageReceived"] == [message["id"]], (
                case.name
            )
        for wamid in case.statuses:
            wait_for(
                lambda w=wamid: "StatusReceived" in stream_types(bot, f"message-{w}"),
                timeout=20,
                message=f"StatusReceived for {case.name}",
            )
        for wamid in case.echoes:
            wait_for(
                lambda w=wamid: "EchoReceived" in stream_types(bot, f"message-{w}"),
                timeout=20,
                message=f"EchoReceived for {case.name}",
            )
        for waba_id, wa_id in case.preferences:
            wait_for(
                lambda w=waba_id, c=wa_id: bool(
                    bot.events_of_type("MarketingPreferenceReceived", waba_id=w, wa_id=c)
                ),
                timeout=20,
                message=f"MarketingPreferenceReceived for {case.name}",
            )
        for waba_id, field_name in case.changes:
            wait_for(
                lambda w=waba_id, f=field_name: any(
                    t == "ChangeReceived" and d["field"] == f for t, d in bot.events(f"account-{w}")
                ),
                timeout=20,
                message=f"ChangeReceived {field_name} for {case.name}",
            )

    # The silent ones were understood (their conversation event exists), not lost.
    for case in silent:
        for phone, message in case.messages:
            expected = SILENT_EVENTS.get(message.get("type"), "UnsupportedReceived")
            stream = "conversation-" + bot.conversation_id(phone, case.customer)
            wait_for(
                lambda s=stream, e=expected: e in stream_types(bot, s),
                timeout=20,
                message=f"{expected} for {case.name}",
            )

    # One more text from every customer who wrote: once its reply is out, every earlier
    # message of that customer has been handled in each of its lanes, so the counts are final.
    fences = bot.fences({c.customer: c.messages[0][0] for c in talk + silent}, timeout=60)
    for case in talk:
        sent = bot.graph.sent_to(case.customer)
        assert len(sent) == 2, (case.name, sent)
        bot_replied = [
            d
            for t, d in bot.events(
                "conversation-" + bot.conversation_id(case.messages[0][0], case.customer)
            )
            if t == "BotReplied"
        ]
        assert [d["text"] for d in bot_replied][1:] == [fences[case.customer]], case.name
        assert sent[0]["body"]["text"]["body"] == bot_replied[0]["text"], case.name
        assert sent[1]["body"]["text"]["body"] == fences[case.customer], case.name
    for case in silent:
        assert bot.graph.texts_to(case.customer) == [fences[case.customer]], case.name
        assert len(bot.graph.sent_to(case.customer)) == 1, case.name
        stream = "conversation-" + bot.conversation_id(case.messages[0][0], case.customer)
        assert stream_types(bot, stream).count("BotReplied") == 1, case.name  # the fence's
