"""Conversation handler: strict inbox order, idempotent replies, catch-up, non-answered kinds.

The inbox is seeded by dedup's own `record_delivery`, so the CustomerMessage commands and the
inbox events have exactly the shape the running pipeline produces.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from services.conversation.domain import Conversation, Turn
from services.conversation.handlers import (
    Deps,
    give_up_message,
    on_business_echo,
    on_business_message,
    on_change_handling,
    on_customer_message,
    on_hand_back,
)
from services.conversation.responders import OpenAIResponder, Reply
from services.conversation.states import Conversations, load
from services.dedup.handlers import record_delivery
from shared.broker.bus import Context, Outputs, Publish, batches
from shared.events.conversation import TurnFailed, conversation_stream
from shared.eventstore import NewEvent, Unrecognised
from shared.eventstore.memory import InMemoryEventStore
from shared.payloads import messages_payload
from shared.resilience import Upstream
from shared.schemas import (
    BusinessEcho,
    ChangeHandling,
    CustomerMessage,
    HandBack,
    MarkRead,
    SendBusinessMessage,
    SendMessage,
    WebhookDelivery,
)
from tests.support import pywa
from tests.support.fakes import FakeOpenAI, dedup_deps

PHONE = "100000000000001"


def new_customer() -> str:
    return "39" + "".join(random.choice("0123456789") for _ in range(10))


def ctx(key: str = "") -> Context:
    return Context(
        message_id=uuid.uuid4().hex, correlation_id=uuid.uuid4().hex, attempt=0, routing_key=key
    )


def text(body: str, customer: str, wamid: str | None = None) -> dict[str, Any]:
    return {
        "from": customer,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def from_fixture(key: str, customer: str, **changes: Any) -> dict[str, Any]:
    """A real pywa message, re-addressed to this test's customer with a fresh wamid."""
    msg = pywa.message(key)
    msg.pop("context", None)
    msg.update({"from": customer, "id": f"wamid.{uuid.uuid4().hex}", **changes})
    return msg


class FakeResponder:
    name = "fake"

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.calls: list[list[tuple[str, str]]] = []  # the turns it saw, per call
        self.published_before: list[list[Publish]] = []  # what was published when called
        self.fail_on: set[str] = set()
        self.delay = 0.0  # seconds each reply takes to write

    async def reply(self, conversation: Conversation, profile: Any = None) -> Reply:
        self.calls.append([(t.role, t.text) for t in conversation.turns])
        self.published_before.append(list(self.harness.published))
        if self.delay:
            await asyncio.sleep(self.delay)
        last = conversation.turns[-1].text
        if last in self.fail_on:
            raise RuntimeError(f"responder failed on {last!r}")
        return Reply(f"re: {last}", self.name)


class Harness:
    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.published: list[Publish] = []
        self.responder = FakeResponder(self)
        self.deps = Deps(self.store, self.responder)
        self.deps_dedup = dedup_deps(self.store)
        self.customer = new_customer()
        self.cid = f"{PHONE}.{self.customer}"

    async def run(self, outputs: Outputs) -> list[Publish]:
        """What the bus does: publish each batch before the handler's next step runs."""
        done: list[Publish] = []
        async for batch in batches(outputs):
            self.published.extend(batch)
            done.extend(batch)
        return done

    async def deliver(self, *messages: dict[str, Any]) -> list[CustomerMessage]:
        """Record a webhook with these messages the way dedup does; its CustomerMessages."""
        body = json.dumps(messages_payload(list(messages), self.customer, PHONE, "Ada Lovelace"))
        delivery = WebhookDelivery(delivery_id=uuid.uuid4().hex, received_at=time.time(), body=body)
        outputs = await record_delivery(self.deps_dedup, delivery, ctx())
        return [p.message for p in outputs if isinstance(p.message, CustomerMessage)]

    async def handle(self, msg: CustomerMessage, deps: Deps | None = None) -> list[Publish]:
        return await self.run(on_customer_message(msg, ctx(msg.conversation_id), deps or self.deps))

    def sends(self, outputs: list[Publish] | None = None) -> list[SendMessage]:
        source = self.published if outputs is None else outputs
        return [p.message for p in source if isinstance(p.message, SendMessage)]

    def reads(self) -> list[MarkRead]:
        return [p.message for p in self.published if isinstance(p.message, MarkRead)]

    async def events(self) -> list[tuple[str, int]]:
        stream = await self.store.read_stream(conversation_stream(self.cid))
        return [(e.type, e.event.seq) for e in stream]  # type: ignore[attr-defined]

    async def state(self) -> Conversation:
        return await load(self.store, self.cid)


def answered_turns(n: int) -> list[tuple[str, int]]:
    """The conversation stream of n messages each answered: CustomerWrote, BotReplied, ..."""
    return [(kind, seq) for seq in range(n) for kind in ("CustomerWrote", "BotReplied")]


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_messages_in_order_get_one_reply_each_in_order(h: Harness) -> None:
    msgs = await h.deliver(text("one", h.customer), text("two", h.customer))
    msgs += await h.deliver(text("three", h.customer))
    assert [m.seq for m in msgs] == [0, 1, 2]

    for msg in msgs:
        await h.handle(msg)

    sends = h.sends()
    assert [s.payload["text"]["body"] for s in sends] == ["re: one", "re: two", "re: three"]
    assert [s.seq for s in sends] == [0, 1, 2]
    assert all(s.to == h.customer and s.phone_number_id == PHONE for s in sends)
    assert all(s.conversation_id == h.cid for s in sends)
    assert len({s.command_id for s in sends}) == 3
    assert all(p.stage == "outbound" and p.key == h.cid for p in h.published)
    assert await h.events() == answered_turns(3)
    # Each reply was written with the history up to and including its own message.
    assert h.responder.calls[-1] == [
        ("customer", "one"),
        ("bot", "re: one"),
        ("customer", "two"),
        ("bot", "re: two"),
        ("customer", "three"),
    ]
    state = await h.state()
    assert state.last_seq == 2
    assert state.customer_name == "Ada Lovelace"


async def test_mark_read_is_published_before_the_responder_and_the_reply(h: Harness) -> None:
    [msg] = await h.deliver(text("hello", h.customer))
    await h.handle(msg)

    kinds = [type(p.message) for p in h.published]
    assert kinds == [MarkRead, SendMessage]
    [read] = h.reads()
    assert read.wamid == msg.wamid
    assert read.phone_number_id == PHONE
    assert read.conversation_id == h.cid
    # Blue ticks go out while the reply is being written, not after.
    assert [type(p.message) for p in h.responder.published_before[0]] == [MarkRead]


async def test_a_reply_ready_within_the_grace_carries_the_read_mark(h: Harness) -> None:
    deps = replace(h.deps, read_grace=5.0)
    [msg] = await h.deliver(text("hello", h.customer))
    await h.handle(msg, deps)

    assert h.reads() == [], "no MarkRead of its own: the reply carries it"
    [send] = h.sends()
    assert send.read == msg.wamid
    assert send.payload["text"]["body"] == "re: hello"


async def test_a_reply_slower_than_the_grace_is_preceded_by_the_read_mark(h: Harness) -> None:
    deps = replace(h.deps, read_grace=0.01)
    h.responder.delay = 0.3
    [msg] = await h.deliver(text("hello", h.customer))
    await h.handle(msg, deps)

    assert [type(p.message) for p in h.published] == [MarkRead, SendMessage]
    assert h.reads()[0].wamid == msg.wamid
    assert h.sends()[0].read == "", "marked read already"


async def test_a_redelivered_message_resends_its_reply_without_the_read_mark(h: Harness) -> None:
    deps = replace(h.deps, read_grace=5.0)
    [msg] = await h.deliver(text("hello", h.customer))
    await h.handle(msg, deps)
    again = await h.handle(msg, deps)
    [resent] = h.sends(again)
    assert resent.command_id == h.sends()[0].command_id
    assert resent.read == ""


async def test_duplicate_reemits_the_same_command_without_answering_again(h: Harness) -> None:
    [msg] = await h.deliver(text("hello", h.customer))
    await h.handle(msg)
    [first] = h.sends()
    events_before = await h.events()

    returned = await h.handle(msg)

    [again] = h.sends(returned)
    assert again.command_id == first.command_id
    assert again.payload == first.payload
    assert again.seq == first.seq == 0
    assert len(h.responder.calls) == 1
    assert await h.events() == events_before


async def test_redelivered_webhook_maps_to_the_same_seq_and_command(h: Harness) -> None:
    message = text("hello", h.customer)
    [msg] = await h.deliver(message)
    await h.handle(msg)
    [first] = h.sends()

    [redelivered] = await h.deliver(message)  # Meta posts the same wamid again
    assert redelivered.seq == msg.seq
    returned = await h.handle(redelivered)

    assert [s.command_id for s in h.sends(returned)] == [first.command_id]
    assert len(h.responder.calls) == 1


async def test_message_ahead_catches_up_from_the_inbox_in_order(h: Harness) -> None:
    msgs = await h.deliver(*(text(t, h.customer) for t in ("a", "b", "c", "d")))

    # The broker hands over seq 2 first: 0 and 1 must be answered before it, from the inbox.
    await h.handle(msgs[2])

    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: a", "re: b", "re: c"]
    assert [s.seq for s in h.sends()] == [0, 1, 2]
    assert [r.wamid for r in h.reads()] == [m.wamid for m in msgs[:3]]
    assert [c[-1] for c in h.responder.calls] == [("customer", t) for t in ("a", "b", "c")]

    # The late ones are duplicates now: the same commands again, no new answers.
    first_commands = {s.seq: s.command_id for s in h.sends()}
    for late in (msgs[0], msgs[1]):
        [again] = h.sends(await h.handle(late))
        assert again.command_id == first_commands[late.seq]
    assert len(h.responder.calls) == 3

    await h.handle(msgs[3])
    assert [s.payload["text"]["body"] for s in h.sends()][-1] == "re: d"
    assert (await h.state()).last_seq == 3


async def test_catch_up_stops_at_the_message_it_was_given(h: Harness) -> None:
    msgs = await h.deliver(*(text(t, h.customer) for t in ("a", "b", "c")))
    await h.handle(msgs[1])
    assert [s.seq for s in h.sends()] == [0, 1]
    assert (await h.state()).last_seq == 1


async def test_reaction_edit_delete_change_state_without_replies(h: Harness) -> None:
    first = text("I want a pizza", h.customer)
    second = text("and a cola", h.customer)
    msgs = await h.deliver(first, second)
    for msg in msgs:
        await h.handle(msg)
    published = len(h.published)
    calls = len(h.responder.calls)

    reaction = from_fixture("message:reaction", h.customer)
    reaction["reaction"]["message_id"] = first["id"]
    edit = from_fixture("edited_message:image", h.customer)
    edit["edit"] = {
        "original_message_id": first["id"],
        "message": {"type": "text", "text": {"body": "I want two pizzas"}},
    }
    revoke = from_fixture("deleted_message:revoke", h.customer)
    revoke["revoke"]["original_message_id"] = second["id"]

    [r] = await h.deliver(reaction)
    await h.handle(r)
    state = await h.state()
    [turn] = [t for t in state.turns if t.wamid == first["id"]]
    assert turn.reactions == [reaction["reaction"]["emoji"]]

    [e] = await h.deliver(edit)
    await h.handle(e)
    state = await h.state()
    [turn] = [t for t in state.turns if t.wamid == first["id"]]
    assert (turn.text, turn.edited) == ("I want two pizzas", True)
    assert turn.reactions == [reaction["reaction"]["emoji"]]

    [d] = await h.deliver(revoke)
    await h.handle(d)
    state = await h.state()
    assert all(t.wamid != second["id"] for t in state.turns)
    assert [t.text for t in state.turns if t.role == "customer"] == ["I want two pizzas"]

    unreaction = from_fixture("message:unreaction_no_emoji", h.customer)
    unreaction["reaction"]["message_id"] = first["id"]
    [u] = await h.deliver(unreaction)
    await h.handle(u)
    state = await h.state()
    [turn] = [t for t in state.turns if t.wamid == first["id"]]
    assert turn.reactions == []

    assert len(h.published) == published, "no MarkRead and no SendMessage for these"
    assert len(h.responder.calls) == calls
    types = [t for t, _ in await h.events()][-4:]
    assert types == ["CustomerReacted", "CustomerEdited", "CustomerDeleted", "CustomerReacted"]
    assert state.last_seq == 5

    # The next turn is answered with the edited history, without the deleted message.
    [n] = await h.deliver(text("how long?", h.customer))
    await h.handle(n)
    seen = h.responder.calls[-1]
    assert ("customer", "I want two pizzas") in seen
    assert ("customer", "and a cola") not in seen
    assert h.sends()[-1].seq == n.seq == 6


@pytest.mark.parametrize(
    ("key", "event"),
    [
        ("system:phone_number_change", "SystemNotice"),
        ("system:identity_change", "SystemNotice"),
        ("message:unsupported", "UnsupportedReceived"),
        ("message:unsupported_with_type", "UnsupportedReceived"),
        ("message:interactive_message_with_err", "UnsupportedReceived"),
    ],
)
async def test_system_and_unsupported_are_recorded_not_answered(
    h: Harness, key: str, event: str
) -> None:
    [msg] = await h.deliver(from_fixture(key, h.customer))
    assert await h.handle(msg) == []
    assert h.published == []  # neither read-marked nor answered
    assert h.responder.calls == []
    assert await h.events() == [(event, 0)]
    # ...and the conversation moves on to the next message.
    [nxt] = await h.deliver(text("still there?", h.customer))
    await h.handle(nxt)
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: still there?"]


@pytest.mark.parametrize(
    "key",
    [
        "callback_button:button",
        "callback_button:quick_reply",
        "callback_selection:description",
        "flow_completion:completion",
        "message:chosen_location",
        "message:contacts",
        "message:order",
        "message:image",
        "message:voice",
    ],
)
async def test_every_answerable_kind_gets_a_reply(h: Harness, key: str) -> None:
    [msg] = await h.deliver(from_fixture(key, h.customer))
    await h.handle(msg)
    [send] = h.sends()
    [call] = h.responder.calls
    assert call[-1][0] == "customer" and call[-1][1]
    assert send.payload["text"]["body"] == f"re: {call[-1][1]}"


async def test_giving_up_lets_the_next_message_through(h: Harness) -> None:
    h.responder.fail_on.add("boom")
    msgs = await h.deliver(text("boom", h.customer), text("after", h.customer))

    with pytest.raises(RuntimeError):
        await h.handle(msgs[0])
    assert await h.events() == [], "nothing is committed for a failed turn"
    assert h.sends() == []

    # The message went to the dead letters: the hook records the turn as failed.
    await give_up_message(msgs[0], ctx(), "RuntimeError: responder failed", h.deps)
    assert await h.events() == [("TurnFailed", 0)]
    assert (await h.state()).failed == {0: "RuntimeError: responder failed"}

    await h.handle(msgs[1])
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: after"]
    assert [s.seq for s in h.sends()] == [1]
    assert [c[-1] for c in h.responder.calls] == [("customer", "boom"), ("customer", "after")]

    # A late dead-letter hook for a message that was handled changes nothing.
    before = await h.events()
    await give_up_message(msgs[1], ctx(), "late", h.deps)
    assert await h.events() == before


async def test_giving_up_marks_the_first_pending_seq(h: Harness) -> None:
    msgs = await h.deliver(*(text(t, h.customer) for t in ("a", "b", "c")))
    await h.handle(msgs[0])
    await give_up_message(msgs[2], ctx(), "gave up", h.deps)
    assert (await h.events())[-1] == ("TurnFailed", 1)
    await h.handle(msgs[2])
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: a", "re: c"]


async def test_a_failed_turn_is_not_reemitted_as_a_reply(h: Harness) -> None:
    h.responder.fail_on.add("boom")
    [msg] = await h.deliver(text("boom", h.customer))
    await give_up_message(msg, ctx(), "gave up", h.deps)
    assert await h.handle(msg) == []
    assert h.sends() == []


# --- OpenAI responder ------------------------------------------------------------------------


def conversation_with(n: int) -> Conversation:
    state = Conversation("p.c")
    for i in range(n):
        role = "customer" if i % 2 == 0 else "bot"
        state.turns.append(Turn(role, f"turn {i}", seq=i // 2))
    return state


def responder(upstream: Any, history_turns: int, url: str = "http://127.0.0.1:9") -> Any:
    return OpenAIResponder(upstream, url, "test-key", "gpt-test", "You are Bob.", history_turns)


@pytest.mark.parametrize(("turns", "history"), [(9, 4), (3, 10), (8, 8), (5, 1)])
def test_openai_messages_have_persona_and_at_most_the_recent_turns(
    turns: int, history: int
) -> None:
    state = conversation_with(turns)
    messages = responder(None, history).messages(state)
    assert messages[0] == {"role": "system", "content": "You are Bob."}
    rest = messages[1:]
    assert len(rest) == min(turns, history)
    expected = state.turns[-len(rest) :]
    assert [m["content"] for m in rest] == [t.text for t in expected]
    assert [m["role"] for m in rest] == [
        "user" if t.role == "customer" else "assistant" for t in expected
    ]
    assert rest[-1]["content"] == state.turns[-1].text


async def test_openai_responder_sends_persona_and_history(fake_openai: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        upstream = Upstream("openai", session, timeout=5, backoff_factor=0.01)
        bot = OpenAIResponder(
            upstream, fake_openai.url + "/v1", "test-key", "gpt-test", "You are Bob.", 3
        )
        state = conversation_with(7)
        answer = await bot.reply(state)

    assert answer == Reply(f"echo: {state.turns[-1].text}", "openai")
    [body] = fake_openai.completions
    assert body["model"] == "gpt-test"
    assert body["messages"][0] == {"role": "system", "content": "You are Bob."}
    assert [m["content"] for m in body["messages"][1:]] == ["turn 4", "turn 5", "turn 6"]


# --- conversations kept in memory between messages -------------------------------------------


class CountingStore(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int]] = []

    async def read_stream(self, stream: str, from_version: int = 0) -> list[Any]:
        self.reads.append((stream, from_version))
        return await super().read_stream(stream, from_version)


async def test_next_message_starts_from_the_kept_state_reading_only_newer_events() -> None:
    h = Harness()
    h.store = CountingStore()
    h.deps = Deps(h.store, h.responder)
    msgs = [(await h.deliver(text(body, h.customer)))[0] for body in ("one", "two", "three")]

    for msg in msgs:
        await h.handle(msg)

    # The whole stream once (the first message); then only what came after the kept state.
    assert [v for s, v in h.store.reads if s == conversation_stream(h.cid)] == [0, 2, 4]
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: one", "re: two", "re: three"]
    # What it kept is what the stream says.
    kept = await load(h.store, h.cid)
    async with h.deps.conversations.checkout(h.cid) as state:
        assert (state.version, state.last_seq, len(state.turns)) == (
            kept.version,
            kept.last_seq,
            len(kept.turns),
        )


async def test_a_state_another_process_moved_on_from_is_refused_dropped_and_reread(
    h: Harness,
) -> None:
    """Process A keeps the conversation after message 0; process B (a consumer fail-over)
    answers message 1. A's kept state is stale: when message 2 comes, its attempt to record
    turn 1 again must be noticed (stored events come back as duplicates), dropped, and the
    stream read: every message answered once, with the history the stream holds."""
    other = Deps(h.store, h.responder)
    m0, m1, m2 = [(await h.deliver(text(b, h.customer)))[0] for b in ("zero", "one", "two")]
    await h.handle(m0)
    await h.handle(m1, other)
    h.responder.fail_on.clear()

    await h.handle(m2)

    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: zero", "re: one", "re: two"]
    assert h.responder.calls[-1] == [
        ("customer", "zero"),
        ("bot", "re: zero"),
        ("customer", "one"),
        ("bot", "re: one"),
        ("customer", "two"),
    ]
    assert await h.events() == answered_turns(3)


async def test_a_state_behind_a_newer_append_is_refused_and_reread(h: Harness) -> None:
    """The kept state is behind by an event this process did not write (say a TurnFailed
    recorded by another instance): the append is refused and the run repeated from the
    stream, without an error reaching the consumer."""
    m0, m1 = [(await h.deliver(text(b, h.customer)))[0] for b in ("zero", "one")]
    await h.handle(m0)
    stale = await load(h.store, h.cid)
    await h.store.append(
        conversation_stream(h.cid),
        [NewEvent(TurnFailed(seq=0, error="noted elsewhere"))],
        expected_version=stale.version,
    )

    await h.handle(m1)

    assert [s.seq for s in h.sends()] == [0, 1]
    assert (await h.events())[-2:] == [("CustomerWrote", 1), ("BotReplied", 1)]


async def test_a_kept_state_catches_up_before_deciding_without_an_append(h: Harness) -> None:
    """Another process answered message 1 while this one kept the state of message 0. A
    redelivery of message 1 here must re-emit that process's reply (seen by reading the newer
    events), not answer it again."""
    other = Deps(h.store, h.responder)
    m0, m1 = [(await h.deliver(text(b, h.customer)))[0] for b in ("zero", "one")]
    await h.handle(m0)
    await h.handle(m1, other)
    calls = len(h.responder.calls)

    [resent] = h.sends(await h.handle(m1))

    assert len(h.responder.calls) == calls  # not answered a second time
    assert resent.seq == 1 and resent.payload["text"]["body"] == "re: one"


async def test_a_failed_run_does_not_keep_what_it_changed(h: Harness) -> None:
    m0, m1 = [(await h.deliver(text(b, h.customer)))[0] for b in ("zero", "one")]
    await h.handle(m0)
    h.responder.fail_on.add("one")

    with pytest.raises(RuntimeError):
        await h.handle(m1)
    h.responder.fail_on.clear()
    await h.handle(m1)

    # The failed run had applied "one" to the state before the responder failed; had that
    # state been kept, the retry would see "one" twice in the history.
    assert h.responder.calls[-1] == [
        ("customer", "zero"),
        ("bot", "re: zero"),
        ("customer", "one"),
    ]
    assert [s.seq for s in h.sends()] == [0, 1]


async def test_kept_conversations_are_bounded() -> None:
    store = InMemoryEventStore()
    conversations = Conversations(store, capacity=3)
    for n in range(5):
        async with conversations.checkout(f"c{n}"):
            pass
    assert len(conversations) == 3


async def test_an_unreadable_inbox_row_is_given_up_and_the_next_message_answered(
    h: Harness,
) -> None:
    """A recorded message that no longer reads back (a bug, a hand-edited row) must not
    hold the customer's later messages: it is given up, the next one is answered."""
    await h.store.append(
        f"inbox-{h.cid}",
        [NewEvent(Unrecognised(type="MessageReceived", data={"wamid": "w"}))],
    )
    [msg] = await h.deliver(text("still there?", h.customer))
    assert msg.seq == 1
    await h.handle(msg)
    assert [(s.seq, s.payload["text"]["body"]) for s in h.sends()] == [(1, "re: still there?")]
    events = await h.events()
    assert events == [("TurnFailed", 0), ("CustomerWrote", 1), ("BotReplied", 1)]
    assert "unreadable inbox event" in (await h.state()).failed[0]


def handling(h: Harness, action: str, assignee: str | None = None) -> ChangeHandling:
    return ChangeHandling(
        request_id=uuid.uuid4().hex,
        conversation_id=h.cid,
        action=action,
        assignee=assignee,
        actor="key_agent",
    )


async def change(h: Harness, msg: ChangeHandling) -> list[Publish]:
    return await h.run(on_change_handling(msg, ctx(h.cid), h.deps))


async def test_handed_off_the_bot_stays_silent_until_released(h: Harness) -> None:
    [first] = await h.deliver(text("hello", h.customer))
    await h.handle(first)
    takeover = handling(h, "handoff", assignee="user_ada")
    assert await change(h, takeover) == []
    assert ((await h.state()).mode, (await h.state()).assignee) == ("agent", "user_ada")
    # The customer's next messages are recorded, neither read-marked nor answered by the bot:
    # the customer writing does not give the conversation back (evolution-api #2143).
    for body in ("is anyone there?", "hello?"):
        [msg] = await h.deliver(text(body, h.customer))
        assert await h.handle(msg) == []
    assert (await h.state()).mode == "agent"
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: hello"]
    assert len(h.reads()) == 1
    # The same request again (a redelivery) records nothing new.
    await change(h, takeover)
    assert [t for t, _ in await h.events()].count("HandedOff") == 1
    # Released: the bot answers the next message (not the ones a person had).
    await change(h, handling(h, "release"))
    [back] = await h.deliver(text("thanks", h.customer))
    await h.handle(back)
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: hello", "re: thanks"]


async def test_handoff_without_an_assignee_waits_and_a_closed_conversation_reopens(
    h: Harness,
) -> None:
    await change(h, handling(h, "handoff"))
    assert (await h.state()).mode == "waiting"
    await change(h, handling(h, "close"))
    assert (await h.state()).mode == "closed"
    [msg] = await h.deliver(text("hi again", h.customer))
    await h.handle(msg)
    assert (await h.state()).mode == "bot"
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: hi again"]
    kinds = [t for t, _ in await h.events()]
    assert kinds == ["HandedOff", "Closed", "Reopened", "CustomerWrote", "BotReplied"]


def echo_delivery(h: Harness, body: str, wamid: str) -> WebhookDelivery:
    """The business replying from its WhatsApp phone app (pywa's smb_message_echoes),
    addressed to this test's customer."""
    payload = pywa.payload("outgoing_message:text")
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = PHONE
    value["contacts"][0]["wa_id"] = h.customer
    echo = value["message_echoes"][0]
    echo.update({"id": wamid, "to": h.customer, "text": {"body": body}})
    echo.pop("to_user_id"), echo.pop("to_parent_user_id")
    return WebhookDelivery(
        delivery_id=uuid.uuid4().hex, received_at=time.time(), body=json.dumps(payload)
    )


async def echo(h: Harness, delivery: WebhookDelivery) -> list[Publish]:
    outputs = await record_delivery(h.deps_dedup, delivery, ctx())
    [msg] = [p.message for p in outputs if isinstance(p.message, BusinessEcho)]
    assert msg.conversation_id == h.cid
    return await h.run(on_business_echo(msg, ctx(h.cid), h.deps))


async def test_a_reply_from_the_phone_app_hands_the_conversation_to_a_person(h: Harness) -> None:
    [first] = await h.deliver(text("hello", h.customer))
    await h.handle(first)
    delivery = echo_delivery(h, "I'll take it from here", "wamid.echo1")
    assert await echo(h, delivery) == []  # already delivered by Meta: nothing to send
    state = await h.state()
    assert (state.mode, state.assignee) == ("waiting", None)
    assert [(t.role, t.text) for t in state.turns][-1] == ("business", "I'll take it from here")
    # The customer's next message is recorded and not answered by the bot.
    [msg] = await h.deliver(text("great, thanks", h.customer))
    assert await h.handle(msg) == []
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: hello"]
    # The same echo again (Meta's redelivery) records nothing new.
    assert await echo(h, delivery) == []
    kinds = [t for t, _ in await h.events()]
    assert kinds == ["CustomerWrote", "BotReplied", "PhoneAppWrote", "HandedOff", "CustomerWrote"]


async def test_a_phone_app_reply_leaves_an_agents_conversation_theirs(h: Harness) -> None:
    await change(h, handling(h, "handoff", assignee="user_ada"))
    await echo(h, echo_delivery(h, "on it too", "wamid.echo2"))
    state = await h.state()
    assert (state.mode, state.assignee) == ("agent", "user_ada")
    assert [t for t, _ in await h.events()] == ["HandedOff", "PhoneAppWrote"]


def agent_message(h: Harness, body: str, actor: str, author: str = "agent") -> SendBusinessMessage:
    return SendBusinessMessage(
        message_id=uuid.uuid4().hex,
        business_id="biz_1",
        conversation_id=h.cid,
        phone_number_id=PHONE,
        to=h.customer,
        message_type="text",
        payload={"type": "text", "text": {"body": body}},
        author=author,
        actor=actor,
    )


async def write(h: Harness, msg: SendBusinessMessage) -> list[Publish]:
    return await h.run(on_business_message(msg, ctx(h.cid), h.deps))


async def test_an_agent_who_writes_first_owns_the_conversation(h: Harness) -> None:
    [first] = await h.deliver(text("hello", h.customer))
    await h.handle(first)
    sent = agent_message(h, "Ada here, how can I help?", actor="usr_ada")
    assert len(h.sends(await write(h, sent))) == 1
    state = await h.state()
    assert (state.mode, state.assignee) == ("agent", "usr_ada")
    # The customer's reply to a person is not the bot's to answer.
    [msg] = await h.deliver(text("my order is late", h.customer))
    assert await h.handle(msg) == []
    assert (await h.state()).mode == "agent"
    # A redelivery of the agent's message hands off nothing again.
    await write(h, sent)
    kinds = [t for t, _ in await h.events()]
    assert kinds == ["CustomerWrote", "BotReplied", "BusinessWrote", "HandedOff", "CustomerWrote"]


async def test_an_agents_key_leaves_it_waiting_and_the_business_key_changes_nothing(
    h: Harness,
) -> None:
    await write(h, agent_message(h, "notice", actor="key_biz", author="business"))
    assert (await h.state()).mode == "bot"
    await write(h, agent_message(h, "an agent's script", actor="key_agent"))
    assert ((await h.state()).mode, (await h.state()).assignee) == ("waiting", None)
    await write(h, agent_message(h, "still the script", actor="key_agent"))
    assert (await h.state()).mode == "waiting"
    # A person answering a waiting conversation takes it.
    await write(h, agent_message(h, "Bo here", actor="usr_bo"))
    assert ((await h.state()).mode, (await h.state()).assignee) == ("agent", "usr_bo")
    # Another person writing into Bo's conversation does not take it from him.
    await write(h, agent_message(h, "Ada too", actor="usr_ada"))
    assert (await h.state()).assignee == "usr_bo"
    assert [t for t, _ in await h.events()].count("HandedOff") == 2


async def idle(h: Harness, since: int) -> list[Publish]:
    msg = HandBack(conversation_id=h.cid, active_version=since)
    return await h.run(on_hand_back(msg, ctx(h.cid), h.deps))


async def version_of(h: Harness, kind: str) -> int:
    stream = await h.store.read_stream(conversation_stream(h.cid))
    return [e.version for e in stream if e.type == kind][-1]


async def test_an_idle_conversation_goes_back_to_the_bot_once(h: Harness) -> None:
    await change(h, handling(h, "handoff", assignee="usr_ada"))
    [msg] = await h.deliver(text("hello?", h.customer))
    await h.handle(msg)
    # The timer counted from the handoff, but the customer wrote since: nothing.
    await idle(h, await version_of(h, "HandedOff"))
    assert (await h.state()).mode == "agent"
    # Counted from the customer's message, nothing since: released, by idle, once.
    since = await version_of(h, "CustomerWrote")
    await idle(h, since)
    await idle(h, since)
    state = await h.state()
    assert (state.mode, state.assignee) == ("bot", None)
    stream = await h.store.read_stream(conversation_stream(h.cid))
    released = [e.event for e in stream if e.type == "Released"]
    assert [(r.by, r.reason, r.request_id) for r in released] == [("idle", "idle", f"idle:{since}")]
    # The bot answers the customer's next message.
    [back] = await h.deliver(text("anyone?", h.customer))
    await h.handle(back)
    assert [s.payload["text"]["body"] for s in h.sends()] == ["re: anyone?"]


async def test_an_idle_timer_for_a_conversation_the_bot_has_does_nothing(h: Harness) -> None:
    await change(h, handling(h, "handoff"))
    since = await version_of(h, "HandedOff")
    await change(h, handling(h, "release"))
    await idle(h, since)
    assert [t for t, _ in await h.events()] == ["HandedOff", "Released"]


async def test_stop_and_start_without_a_bot_opt_out_and_in_and_the_llm_does_not_answer(
    h: Harness,
) -> None:
    msgs = await h.deliver(
        text("Stop", h.customer), text("hello", h.customer), text("START", h.customer)
    )
    for msg in msgs:
        await h.handle(msg)

    bodies = [s.payload["text"]["body"] for s in h.sends()]
    assert bodies[0].startswith("You're unsubscribed")
    assert bodies[1] == "re: hello"
    assert bodies[2].startswith("You're subscribed again")
    # The responder (the LLM) was asked about "hello" only.
    assert [call[-1] for call in h.responder.calls] == [("customer", "hello")]
    stream = await h.store.read_stream(conversation_stream(h.cid))
    acted = [e.event.actions for e in stream if e.type == "BotActed"]  # type: ignore[attr-defined]
    assert [[a["kind"] for a in actions] for actions in acted] == [["opt_out"], ["opt_in"]]
    assert not (await h.state()).opted_out
