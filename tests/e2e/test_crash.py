"""Crash safety with real SIGKILLs of the real service processes.

The guarantee under test: killing any one service at any moment and restarting it loses no
customer message and sends no second reply for it. The one allowed exception is a kill inside
the in-flight Graph API send itself: outbound cannot know whether Meta got it, so it sends
again, and that must be visible (a SendInterrupted event and outbound_uncertain_sends_total),
never silent.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shared.events.conversation import conversation_stream
from shared.events.outbound import outbox_stream
from shared.payloads import text_message
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import FakeServer, RecordedRequest, sends_to, wait_for

PHONE_NUMBER_ID = "100000000000001"  # text_message's default business number
# Seconds an outcome may take; generous because a restarted process needs a moment to start.
OUTCOME_TIMEOUT = 90


def text(i: int) -> str:
    return f"m{i}"


def reply_to(i: int) -> str:
    # FakeOpenAI answers "echo: <last user message>", so a reply names the message it answers.
    return f"echo: {text(i)}"


@dataclass
class Load:
    """Customers writing to the bot in a background thread per customer, each customer's
    messages "m1".."mK" strictly one after another, as Meta delivers them.

    A POST that does not get a 200 (503 while the broker is down, a refused or reset connection
    while ingress is down) is sent again, as Meta does, with the same payload (same wamid),
    until it gets a 200 or the load's deadline passes.
    """

    bot: Running
    customers: list[str]
    count: int
    gap: float = 0.1  # seconds between one customer's messages
    duration: float = 75.0  # deadline for the whole load, retries included
    accepted: dict[str, list[int]] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)  # "503", "ConnectionRefusedError"...
    # Set on every 200: ingress has just stored a delivery, so dedup is handling it now.
    just_accepted: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        deadline = time.monotonic() + self.duration
        for customer in self.customers:
            self.accepted[customer] = []
            thread = threading.Thread(
                target=self._write, args=(customer, deadline), name=f"load-{customer}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _write(self, customer: str, deadline: float) -> None:
        for i in range(1, self.count + 1):
            payload = text_message(text(i), customer=customer)
            while time.monotonic() < deadline:
                try:
                    status, _ = self.bot.post(payload)
                    outcome = str(status)
                except (OSError, http.client.HTTPException) as exc:
                    outcome = type(exc).__name__
                if outcome == "200":
                    with self._lock:
                        self.accepted[customer].append(i)
                    self.just_accepted.set()
                    break
                with self._lock:
                    self.refusals[outcome] += 1
                time.sleep(0.1)
            else:
                return  # out of time: this and later messages were never accepted
            time.sleep(self.gap)

    def join(self, timeout: float = OUTCOME_TIMEOUT) -> None:
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "load threads did not finish"

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    def expected(self, customer: str) -> list[str]:
        with self._lock:
            return [reply_to(i) for i in self.accepted[customer]]

    def assert_all_accepted(self) -> None:
        for customer in self.customers:
            assert self.accepted[customer] == list(range(1, self.count + 1)), (
                f"{customer}: only {self.accepted[customer]} accepted; refusals {self.refusals}"
            )


def replies(bot: Running, customers: list[str]) -> int:
    return sum(len(bot.graph.texts_to(c)) for c in customers)


def in_flight(server: FakeServer, pred: Callable[[RecordedRequest], bool], within: float) -> bool:
    """A request matching pred reached the fake less than `within` seconds ago: with the fake's
    latency longer than that, it is still unanswered, so the caller is inside the call."""
    now = time.monotonic()
    return any(now - r.received_at < within for r in server.requests_matching(pred))


def is_send_to_any(customers: list[str]) -> Callable[[RecordedRequest], bool]:
    preds = [sends_to(c) for c in customers]
    return lambda rec: any(p(rec) for p in preds)


def is_completion(rec: RecordedRequest) -> bool:
    return rec.path.endswith("/chat/completions")


# --- what the event store says ---------------------------------------------------------------


def command_ids(bot: Running, customer: str) -> dict[str, list[str]]:
    """Reply text -> the command ids of the BotReplied events that carry it."""
    result: dict[str, list[str]] = {}
    for type_, data in bot.events(
        conversation_stream(bot.conversation_id(PHONE_NUMBER_ID, customer))
    ):
        if type_ == "BotReplied":
            result.setdefault(data["text"], []).append(data["command_id"])
    return result


def interrupted_sends(bot: Running, customers: list[str]) -> dict[str, int]:
    """Outbox stream -> number of SendInterrupted events, for these customers' replies."""
    streams = [
        outbox_stream(cid)
        for customer in customers
        for ids in command_ids(bot, customer).values()
        for cid in ids
    ]
    if not streams:
        return {}
    rows = bot.sql(
        "SELECT stream_name, count(*) AS n FROM events"
        " WHERE type = 'SendInterrupted' AND stream_name = ANY($1::text[])"
        " GROUP BY stream_name",
        streams,
    )
    return {r["stream_name"]: int(r["n"]) for r in rows}


# --- the guarantee ---------------------------------------------------------------------------


def assert_answered_once_in_order(
    bot: Running, load: Load, *, interrupted_may_repeat: bool = False
) -> None:
    """Every accepted message got its reply, in the customer's order, exactly once; with
    interrupted_may_repeat, a reply may repeat only as often as its send was interrupted."""

    def all_answered() -> bool:
        return all(set(load.expected(c)) <= set(bot.graph.texts_to(c)) for c in load.customers)

    try:
        wait_for(all_answered, timeout=OUTCOME_TIMEOUT, interval=0.2, message="every reply")
    except AssertionError as timeout:
        missing = {
            c: [t for t in load.expected(c) if t not in set(bot.graph.texts_to(c))]
            for c in load.customers
        }
        missing = {c: m for c, m in missing.items() if m}
        raise AssertionError(f"{timeout}; missing: {missing}") from None
    # Redeliveries after a kill go through the customer's lanes like everything else: once a
    # last message of each customer is answered, no second reply can still come.
    fences = bot.fences(load.customers, timeout=OUTCOME_TIMEOUT)
    interrupted = interrupted_sends(bot, load.customers) if interrupted_may_repeat else {}
    for customer in load.customers:
        *sent, last = bot.graph.texts_to(customer)
        assert last == fences[customer], f"{customer}: a reply after the fence: {last!r}"
        expected = load.expected(customer)
        first_seen = list(dict.fromkeys(sent))
        assert first_seen == expected, f"{customer}: replies out of order or unexpected: {sent}"
        repeats = {t: n - 1 for t, n in Counter(sent).items() if n > 1}
        if not interrupted_may_repeat:
            assert not repeats, f"{customer}: second replies {repeats}"
            continue
        ids = command_ids(bot, customer)
        for reply, extra in repeats.items():
            # One BotReplied per message, so one command; each repeat needs an interruption.
            assert len(ids.get(reply, [])) == 1, f"{customer}: {reply!r} decided {ids.get(reply)}"
            allowed = interrupted.get(outbox_stream(ids[reply][0]), 0)
            assert extra <= allowed, (
                f"{customer}: {reply!r} sent {extra + 1} times, {allowed} interrupted sends"
            )


def kill(bot: Running, service: str) -> None:
    bot.stack.kill(service)
    assert bot.stack.pid(service) is None, f"{service} survived SIGKILL"


# --- tests -----------------------------------------------------------------------------------

CUSTOMERS = 4
MESSAGES = 10
SLOW = 0.5  # upstream latency that keeps a handler inside its call
JUST_STARTED = 0.15  # a call younger than this still has SLOW - JUST_STARTED to go


def kill_mid_handling(bot: Running, service: str, load: Load, replied: int) -> None:
    """SIGKILL `service` once `replied` replies went out, at a moment it is busy: for dedup right
    after ingress stored a delivery, for conversation and outbound inside the slow upstream
    call (made slow by the test) that it started less than JUST_STARTED ago."""
    customers = load.customers
    wait_for(
        lambda: replies(bot, customers) >= replied,
        timeout=OUTCOME_TIMEOUT,
        message=f"{replied} replies before killing {service}",
    )
    if service == "dedup":
        load.just_accepted.clear()
        while not load.done and not load.just_accepted.wait(0.5):
            pass
    elif service == "conversation":
        wait_for(
            lambda: in_flight(bot.openai, is_completion, JUST_STARTED),
            timeout=OUTCOME_TIMEOUT,
            interval=0.01,
            message="an LLM call in flight",
        )
    else:
        sends = is_send_to_any(customers)
        wait_for(
            lambda: in_flight(bot.graph, sends, JUST_STARTED),
            timeout=OUTCOME_TIMEOUT,
            interval=0.01,
            message="a Graph API send in flight",
        )
    kill(bot, service)


@pytest.mark.parametrize("service", ["dedup", "conversation", "outbound"])
def test_sigkill_under_load_loses_nothing_and_never_replies_twice(
    bot: Running, service: str
) -> None:
    customers = [new_customer() for _ in range(CUSTOMERS)]
    if service == "conversation":
        # The kill lands while the handler waits for the LLM: nothing committed yet.
        bot.openai.latency = SLOW
    elif service == "outbound":
        # The kill lands inside the Graph API send: the allowed, counted exception.
        bot.graph.latency = SLOW
    # Dedup is quick, so its load is spread out to still be posting at the second kill.
    load = Load(bot, customers, MESSAGES, gap=0.5 if service == "dedup" else 0.3).start()

    for _ in range(2):  # twice: the restarted process must survive a crash too
        kill_mid_handling(bot, service, load, replied=replies(bot, customers) + 3)
        time.sleep(1.0)  # dead for a moment: work piles up in its queues
        before = sum(interrupted_sends(bot, customers).values())
        bot.restart(service)
        if service == "outbound":
            # The killed send is redelivered: recorded and counted by the new process.
            def counted(before: int = before) -> bool:
                new = sum(interrupted_sends(bot, customers).values()) - before
                uncertain = bot.metric("outbound", "outbound_uncertain_sends_total")
                return new >= 1 and uncertain >= new

            wait_for(counted, timeout=OUTCOME_TIMEOUT, message="SendInterrupted, counted")

    load.join()
    load.assert_all_accepted()
    assert_answered_once_in_order(bot, load, interrupted_may_repeat=service == "outbound")


def test_sigkill_of_ingress_refuses_posts_and_then_answers_every_accepted_one_once(
    bot: Running,
) -> None:
    customers = [new_customer() for _ in range(CUSTOMERS)]
    load = Load(bot, customers, MESSAGES, gap=0.3).start()
    answered = 0
    for _ in range(2):
        wait_for(
            lambda t=answered + 3: replies(bot, customers) >= t,
            timeout=OUTCOME_TIMEOUT,
            message="replies before killing ingress",
        )
        kill(bot, "ingress")
        # Down: the POST fails without an answer, so Meta keeps the delivery and retries.
        with pytest.raises((OSError, http.client.HTTPException)):
            bot.post(text_message("while down", customer=new_customer()))
        time.sleep(1.0)
        bot.restart("ingress")
        answered = replies(bot, customers)

    load.join()
    assert sum(load.refusals.values()) > 0, "the load never met the dead ingress"
    load.assert_all_accepted()
    assert_answered_once_in_order(bot, load)


def test_a_reply_committed_but_delivered_again_is_sent_once(bot: Running) -> None:
    """Deterministic form of a crash between conversation's commit and its ack: the customer
    message arrives again after the reply is recorded, and the reply command is re-emitted.
    Outbound must send each reply once, though it receives every command twice."""
    customers = [new_customer() for _ in range(3)]
    count = 3
    payloads = {
        c: [text_message(text(i), customer=c) for i in range(1, count + 1)] for c in customers
    }
    kill(bot, "outbound")
    for customer in customers:
        for payload in payloads[customer]:
            assert bot.post(payload)[0] == 200

    def all_decided() -> bool:
        return all(len(command_ids(bot, c)) == count for c in customers)

    wait_for(all_decided, timeout=OUTCOME_TIMEOUT, message="BotReplied for every message")
    kill(bot, "conversation")
    duplicates = bot.metric("dedup", "dedup_duplicates_total", kind="message")
    for customer in customers:
        for payload in payloads[customer]:
            # Meta redelivers the same webhook (same wamid): dedup forwards it again.
            assert bot.post(payload)[0] == 200
    wait_for(
        lambda: (
            bot.metric("dedup", "dedup_duplicates_total", kind="message")
            >= duplicates + count * len(customers)
        ),
        timeout=OUTCOME_TIMEOUT,
        message="dedup recognised the redeliveries",
    )
    bot.restart("conversation")
    # The restarted conversation finds every message already answered and re-emits the reply.
    wait_for(
        lambda: (
            bot.metric("conversation", "events_processed_total", outcome="ok")
            >= count * len(customers)
        ),
        timeout=OUTCOME_TIMEOUT,
        message="conversation handled the redeliveries",
    )
    assert bot.graph.sent_to(customers[0]) == [], "outbound is down, nothing can be sent yet"
    bot.restart("outbound")

    load = Load(bot, customers, count)  # not started: describes what was accepted
    load.accepted = {c: list(range(1, count + 1)) for c in customers}
    assert_answered_once_in_order(bot, load)
    handled = bot.metric(
        "outbound", "events_processed_total", type="outbound.send_message", outcome="ok"
    )
    assert handled >= 2 * count * len(customers), f"only {handled} send commands reached outbound"
    assert interrupted_sends(bot, customers) == {}
