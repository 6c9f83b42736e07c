"""Fuzzing the webhook, signed, against the running stack (real ingress, real dedup behind it).

Hypothesis generates batches of deliveries: Meta-shaped ones (messages of every type,
statuses, several entries and changes, business-scoped `user_id` fields) and ones that break
Meta's shape (wrong types anywhere, huge and odd ids, NULs, deep nesting, duplicate keys,
bytes that are not UTF-8, truncated JSON, tops that are not objects), each signed with the
app secret, a few not. After each batch:

- no 5xx: every signed delivery is answered 200 (kept, or quarantined), every unsigned one
  401 (a 503 would mean the broker is down, which this test never does);
- nothing stuck: dedup has handled every delivery of the batch, each at its first attempt
  (its processed counter, a fence for every lane at once), and a fence, a plain text to
  each customer of the batch's valid deliveries, is answered: replies keep each customer's
  order end to end, so everything before it was handled;
- nothing lost: every valid message's wamid is recorded as MessageReceived; a message with
  a business-scoped id and no `from` is kept (today as a change of unknown shape).

What breaks Meta's shape breaks the envelope that ingress and dedup read (entries, changes,
values, metadata, contacts, statuses, a message's ids and type), on customers of their own.
The bodies of messages (`text`, `image`, ...) are the conversation's to read: they are
broken too, on the fenced customers, whose fences must still be answered (a wrong type in a
body reads as empty). `FUZZ_STRICT=0` leaves the bodies alone.

Reproducible: `derandomize` fixes the examples (the customers' numbers are fresh each run).
`FUZZ_EXAMPLES` (batches, default 60) runs more: `make fuzz`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.meta.signature import sign
from tests.e2e.harness import APP_SECRET, Running, new_customer, own_stack
from tests.support.fakes import wait_for

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
STRICT = os.environ.get("FUZZ_STRICT", "1") != "0"
BATCH = 40  # deliveries per example
PHONE_NUMBER_ID = "100000000000001"
WABA_ID = "200000000000001"
RUN = uuid.uuid4().hex[:8]
TYPES = (
    "text image audio video document sticker location contacts interactive button reaction"
    " order system request_welcome unsupported edit revoke"
).split()

# --- Meta-shaped pieces -----------------------------------------------------------------------

short_text = st.text(max_size=40)
digits = st.text("0123456789", min_size=1, max_size=20)


def media_object(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    extra: dict[str, st.SearchStrategy[Any]] = {"caption": short_text}
    if kind == "audio":
        extra = {"voice": st.booleans()}
    if kind == "document":
        extra = {"filename": short_text, "caption": short_text}
    if kind == "sticker":
        extra = {"animated": st.booleans()}
    return st.fixed_dictionaries(
        {
            "id": digits,
            "mime_type": st.sampled_from(["image/jpeg", "audio/ogg; codecs=opus", "video/mp4"]),
            "sha256": st.text("0123456789abcdef", min_size=0, max_size=64),
        },
        optional=extra,
    )


def body_of(kind: str) -> st.SearchStrategy[Any]:
    if kind == "text":
        return st.fixed_dictionaries({"body": short_text}, optional={"preview_url": st.booleans()})
    if kind in ("image", "audio", "video", "document", "sticker"):
        return media_object(kind)
    if kind == "location":
        return st.fixed_dictionaries(
            {"latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180)},
            optional={"name": short_text, "address": short_text, "url": short_text},
        )
    if kind == "contacts":
        person = st.fixed_dictionaries(
            {"name": st.fixed_dictionaries({"formatted_name": short_text})},
            optional={"phones": st.lists(st.fixed_dictionaries({"phone": digits}), max_size=2)},
        )
        return st.lists(person, min_size=1, max_size=2)
    if kind == "interactive":
        reply = st.fixed_dictionaries({"id": short_text, "title": short_text})
        return st.one_of(
            st.fixed_dictionaries({"type": st.just("button_reply"), "button_reply": reply}),
            st.fixed_dictionaries({"type": st.just("list_reply"), "list_reply": reply}),
            st.fixed_dictionaries(
                {
                    "type": st.just("nfm_reply"),
                    "nfm_reply": st.fixed_dictionaries(
                        {"response_json": short_text, "body": short_text, "name": short_text}
                    ),
                }
            ),
        )
    if kind == "button":
        return st.fixed_dictionaries({"payload": short_text, "text": short_text})
    if kind == "reaction":
        return st.fixed_dictionaries(
            {"message_id": short_text, "emoji": st.sampled_from(["", "👍", "❤️", "x"])}
        )
    if kind == "order":
        item = st.fixed_dictionaries(
            {"product_retailer_id": short_text, "quantity": st.integers(0, 99)}
        )
        return st.fixed_dictionaries(
            {"catalog_id": digits, "product_items": st.lists(item, max_size=3)}
        )
    if kind == "system":
        return st.fixed_dictionaries({"body": short_text, "type": short_text})
    return st.fixed_dictionaries({})


@st.composite
def message(draw: st.DrawFn, customer: str, wamid: str, bsuid: str | None) -> dict[str, Any]:
    kind = draw(st.sampled_from(TYPES))
    msg: dict[str, Any] = {
        "from": customer,
        "id": wamid,
        "timestamp": str(draw(st.integers(1_600_000_000, 1_900_000_000))),
        "type": kind,
    }
    if kind not in ("request_welcome", "edit", "revoke", "unsupported"):
        msg[kind] = draw(body_of(kind))
    if kind == "unsupported":
        msg["errors"] = [{"code": 131051, "title": "Message type unknown"}]
    if bsuid is not None:
        msg["from_user_id"] = bsuid
    if draw(st.booleans()):
        msg["context"] = {"from": "15550009999", "id": f"wamid.ctx.{draw(digits)}"}
    return msg


@st.composite
def status(draw: st.DrawFn, customer: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"wamid.out.{draw(digits)}",
        "status": draw(st.sampled_from(["sent", "delivered", "read", "failed", "played", "new"])),
        "timestamp": str(draw(st.integers(1_600_000_000, 1_900_000_000))),
        "recipient_id": customer,
    }
    if out["status"] == "failed":
        out["errors"] = [{"code": draw(st.sampled_from([131047, 131026, 130429])), "title": "x"}]
    if draw(st.booleans()):
        out["pricing"] = {"billable": True, "category": "service", "pricing_model": "PMP"}
    return out


@dataclass
class Case:
    """One delivery: its body, whether it is signed, and what must follow from it."""

    body: bytes
    signed: bool = True
    kind: str = "valid"
    wamids: list[str] = field(default_factory=list)  # recorded as MessageReceived, if valid
    customers: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # business-scoped only: kept somewhere
    fenced: bool = True  # its customers get the end-to-end fence


_CUSTOMER_BASE = int(new_customer()[2:]) // 10_000 * 10_000  # 39 + 10 digits, this run's
_SERIAL = itertools.count()


class Ids:
    """Fresh wamids and this batch's customers, apart from the rest of the session's.
    Counters, not randomness: hypothesis must see every choice it does not make itself."""

    def __init__(self) -> None:
        self.customers = [self.customer() for _ in range(3)]  # valid deliveries, fenced
        self.victims = [self.customer() for _ in range(3)]  # broken ones

    @staticmethod
    def customer() -> str:
        return f"39{(_CUSTOMER_BASE + next(_SERIAL)) % 10**10:010d}"

    @staticmethod
    def wamid() -> str:
        return f"wamid.fuzz.{RUN}.{next(_SERIAL)}"


@st.composite
def meta_delivery(draw: st.DrawFn, ids: Ids, victims: bool = False) -> Case:
    """A delivery as Meta sends it: 1-2 entries of 1-2 changes, messages and statuses."""
    pool = ids.victims if victims else ids.customers
    kept: list[str] = []
    wamids: list[str] = []
    customers: list[str] = []
    entries = []
    for _ in range(draw(st.integers(1, 2))):
        changes = []
        for _ in range(draw(st.integers(1, 2))):
            if draw(st.integers(0, 9)) == 0:  # another field: kept as a change
                changes.append(
                    {
                        "field": draw(
                            st.sampled_from(
                                ["account_update", "message_template_status_update", "calls"]
                            )
                        ),
                        "value": {"event": draw(short_text), "n": draw(st.integers())},
                    }
                )
                continue
            customer = draw(st.sampled_from(pool))
            bsuid = draw(st.one_of(st.none(), st.just(f"BR.{customer[-6:]}{RUN}")))
            contact: dict[str, Any] = {"profile": {"name": draw(short_text)}, "wa_id": customer}
            if bsuid is not None:
                contact["user_id"] = bsuid
            value: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": "15550009999",
                    "phone_number_id": PHONE_NUMBER_ID,
                },
                "contacts": [contact],
            }
            count = draw(st.integers(0, 3))
            if count:
                batch = [ids.wamid() for _ in range(count)]
                value["messages"] = [draw(message(customer, w, bsuid)) for w in batch]
                wamids += batch
                customers.append(customer)
                if bsuid is not None and draw(st.integers(0, 3)) == 0:
                    # A username hides the number: `from` (and `wa_id`) absent.
                    hidden = ids.wamid()
                    only = draw(message(customer, hidden, bsuid))
                    del only["from"]
                    value["messages"].append(only)
                    kept.append(hidden)
            if draw(st.booleans()) or not count:
                value["statuses"] = draw(st.lists(status(customer), min_size=1, max_size=3))
                customers.append(customer)
            changes.append({"field": "messages", "value": value})
        entries.append({"id": WABA_ID, "time": draw(st.integers(0, 2**31)), "changes": changes})
    payload = {"object": "whatsapp_business_account", "entry": entries}
    return Case(json.dumps(payload).encode(), wamids=wamids, customers=customers, kept=kept)


# --- what breaks Meta's shape -----------------------------------------------------------------

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(""),
    st.just("x" * 5000),  # a huge id
    st.just("\u0000"),
    st.just("a b\nc"),
    st.just("wamid.\u202e\u200b"),
    st.just("😀" * 30),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(short_text, st.integers(), max_size=2),
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


MESSAGE_ENVELOPE = {"id", "from", "type", "timestamp", "from_user_id"}


def envelope(path: tuple[Any, ...], payload: Any) -> bool:
    """Whether `path` is read by ingress or dedup rather than inside a message's body."""
    for i, key in enumerate(path):
        if key == "messages" and len(path) > i + 2:
            return path[i + 2] in MESSAGE_ENVELOPE and len(path) == i + 3
    return True


def replace_at(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: replace_at(v, rest, value) if k == head else v for k, v in node.items()}
    return [replace_at(v, rest, value) if i == head else v for i, v in enumerate(node)]


# Where in the body to break it, as a number the body's length then bounds: the length
# depends on the ids, which are counters, and hypothesis must draw the same way each time.
POSITION = st.integers(0, 2**20)


def nest(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@st.composite
def broken_delivery(draw: st.DrawFn, ids: Ids) -> Case:
    shaped = draw(meta_delivery(ids, victims=not STRICT))
    payload, customers = json.loads(shaped.body), shaped.customers
    how = draw(
        st.sampled_from(
            [
                "wrong_type",
                "wrong_types",
                "odd_id",
                "nul",
                "deep_ok",
                "deep",
                "duplicate_keys",
                "not_utf8",
                "truncated",
                "raw_nul",
                "top_level",
                "huge_number",
                "lone_surrogate",
                "unsigned",
            ]
        )
    )
    text = json.dumps(payload)
    signed = True
    if how in ("wrong_type", "wrong_types"):
        for _ in range(1 if how == "wrong_type" else draw(st.integers(2, 6))):
            spots = [p for p in paths(payload) if STRICT or envelope(p, payload)]
            payload = replace_at(payload, draw(st.sampled_from(spots)), draw(odd_values))
        text = json.dumps(payload)
    elif how == "odd_id":
        spots = [
            p
            for p in paths(payload)
            if p and p[-1] in ("id", "from", "phone_number_id", "recipient_id", "wa_id", "user_id")
        ]
        for spot in draw(st.lists(st.sampled_from(spots), min_size=1, max_size=3)) if spots else []:
            payload = replace_at(payload, spot, draw(odd_values))
        text = json.dumps(payload)
    elif how == "nul":
        spots = [p for p in paths(payload) if p and isinstance(p[-1], str)]
        spot = draw(st.sampled_from(spots))  # a NUL is a string's: bodies too
        payload = replace_at(payload, spot, "nul\u0000inside")
        text = json.dumps(payload)
        if draw(st.booleans()):
            text = text.replace('"object"', '"ob\\u0000ject"', 1)  # a NUL in a key
    elif how in ("deep_ok", "deep"):
        depth = draw(st.integers(20, 55) if how == "deep_ok" else st.integers(65, 3000))
        text = text[:-1] + ', "deep": ' + nest(depth) + "}"
    elif how == "duplicate_keys":
        text = text[:-1] + ', "entry": ' + json.dumps(draw(odd_values)) + "}"
        text = text.replace('"type": ', '"type": "text", "type": ', 1)
    elif how == "top_level":
        text = json.dumps(draw(st.one_of(odd_values, st.just([payload]))))
    elif how == "huge_number":
        text = text[:-1] + ', "n": ' + draw(st.sampled_from(["1e400", "-1e400", "9" * 400])) + "}"
    elif how == "lone_surrogate":
        text = text.replace('"object"', '"\\ud800object"', 1)
    elif how == "unsigned":
        signed = False
    raw = text.encode()
    if how == "not_utf8":
        at = draw(POSITION) % (len(raw) + 1)
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
            + raw[at:]
        )
    elif how == "truncated":
        raw = raw[: draw(POSITION) % max(1, len(raw))]
    elif how == "raw_nul":
        at = draw(POSITION) % (len(raw) + 1)
        raw = raw[:at] + b"\x00" + raw[at:]
    return Case(raw, signed=signed, kind=how, customers=customers, fenced=STRICT)


@st.composite
def case(draw: st.DrawFn, ids: Ids) -> Case:
    if draw(st.integers(0, 2)) == 0:  # a third valid, two thirds broken
        return draw(meta_delivery(ids))
    return draw(broken_delivery(ids))


@st.composite
def batches(draw: st.DrawFn) -> list[Case]:
    ids = Ids()
    return [draw(case(ids)) for _ in range(BATCH)]


# --- against the stack ------------------------------------------------------------------------


@dataclass
class Tally:
    cases: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    valid_messages: int = 0
    started: float = field(default_factory=time.monotonic)


async def post_all(url: str, cases: list[Case]) -> list[int]:
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def post(one: Case) -> int:
            headers = {"Content-Type": "application/json"}
            if one.signed:
                headers["X-Hub-Signature-256"] = sign(APP_SECRET, one.body)
            async with limit, http.post(url, data=one.body, headers=headers) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(post(c) for c in cases)))


def fence(bot: Running, customers: set[str], post: Callable[[list[Case]], list[int]]) -> None:
    texts = {c: f"fence {uuid.uuid4().hex[:8]}" for c in customers}
    fences = [
        Case(
            json.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "id": WABA_ID,
                            "changes": [
                                {
                                    "field": "messages",
                                    "value": {
                                        "messaging_product": "whatsapp",
                                        "metadata": {
                                            "display_phone_number": "15550009999",
                                            "phone_number_id": PHONE_NUMBER_ID,
                                        },
                                        "contacts": [{"profile": {"name": "F"}, "wa_id": c}],
                                        "messages": [
                                            {
                                                "from": c,
                                                "id": f"wamid.fence.{uuid.uuid4().hex}",
                                                "timestamp": str(int(time.time())),
                                                "type": "text",
                                                "text": {"body": text},
                                            }
                                        ],
                                    },
                                }
                            ],
                        }
                    ],
                }
            ).encode()
        )
        for c, text in texts.items()
    ]
    assert post(fences) == [200] * len(fences)

    def address_of(customer: str) -> str:
        """Where replies go: a fuzzed delivery may have linked their wa_id to a user id
        first seen beside it (the same person to Meta), and replies then go to that."""
        links = [
            d.get("address") or d["customer"]
            for t, d in bot.events("identity-default." + bot.customer_key(customer))
        ]
        return links[0] if links else customer

    # Once, not per poll: dedup handled the batch before its fences, so the links are in
    # place, and a read per poll per customer meets the shared server's connection limit.
    addresses = {c: address_of(c) for c in texts}

    def answered() -> bool:
        return all(f"echo: {t}" in bot.graph.texts_to(addresses[c]) for c, t in texts.items())

    try:
        wait_for(answered, timeout=60, interval=0.02, message="every fence of the batch answered")
    except AssertionError:
        stuck = {
            c: {
                "sent": bot.graph.texts_to(c)[-3:],
                "conversation": [
                    t
                    for t, _ in bot.events(
                        "conversation-" + bot.conversation_id(PHONE_NUMBER_ID, c)
                    )
                ][-8:],
                "inbox": len(bot.events("inbox-" + bot.conversation_id(PHONE_NUMBER_ID, c))),
                "linked": bot.events("identity-default." + bot.customer_key(c)),
                "recorded": [
                    (r["stream_name"], r["type"])
                    for r in bot.sql(
                        "SELECT stream_name, type FROM events WHERE data::text LIKE $1"
                        " ORDER BY global_position DESC LIMIT 3",
                        f"%{t}%",
                    )
                ],
            }
            for c, t in texts.items()
            if f"echo: {t}" not in bot.graph.texts_to(address_of(c))
        }
        raise AssertionError(f"fences not answered: {stuck}") from None


def dedup_handled(bot: Running) -> tuple[float, float]:
    """Deliveries dedup handled at their first attempt, and those it did not."""
    ok = bot.metric("dedup", "events_processed_total", type="webhook.delivery", outcome="ok")
    every = bot.metric("dedup", "events_processed_total", type="webhook.delivery")
    return ok, every - ok


Query = Callable[..., list[Any]]


@dataclass
class Recorded:
    """What the event store holds, read through the store's mapper as the services read it
    (customers' data is sealed in the table, so SQL on `data` finds nothing): the wamid of
    every MessageReceived, and every event's data as text, to find a wamid kept anywhere."""

    bot: Running
    last: int = 0
    received: set[str] = field(default_factory=set)
    texts: dict[int, str] = field(default_factory=dict)  # global position -> the event's data

    def __post_init__(self) -> None:
        self.start = self.last

    def refresh(self) -> None:
        while True:
            # Back by a margin: a transaction can commit after one with higher positions.
            after = max(self.start, self.last - 1000)
            rows = self.bot.read_store(lambda store, a=after: store.read_after(a, limit=5000))
            for r in rows:
                position = r.position.global_position
                self.last = max(self.last, position)
                self.texts[position] = msgspec.json.encode(r.event).decode()
                if r.type == "MessageReceived":
                    self.received.add(getattr(r.event, "wamid", ""))
            if len(rows) < 5000:
                return

    def all_received(self, wamids: list[str]) -> bool:
        self.refresh()
        return set(wamids) <= self.received

    def kept_somewhere(self, wamids: list[str]) -> bool:
        self.refresh()
        return all(any(f'{w}"' in text for text in self.texts.values()) for w in wamids)


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[Running]:
    """A stack of its own: the checks read the fake Graph's sends and the event store, and
    in the session's stack those hold every other test's too (the run then took minutes
    longer in the full suite than alone, past its time-out)."""
    with own_stack() as running:
        yield running


# 60 batches take about a minute on a quiet 2-core machine, and three or more beside other
# work: the suite's 180 s is for a hung test, and this one's work is much larger.
@pytest.mark.timeout(600)
def test_fuzzed_deliveries_get_no_5xx_and_nothing_is_stuck_or_lost(fuzz_stack: Running) -> None:
    bot = fuzz_stack
    url = bot.ingress_url + "/webhook"
    tally = Tally()
    dead_before = bot.metric("dedup", "dead_lettered_messages_total")
    loop = asyncio.new_event_loop()
    # One connection for the whole run: the database server is shared, and connecting
    # for every query can meet its limit.
    conn = loop.run_until_complete(asyncpg.connect(bot.database_url))
    # Only what this test records is looked at: the session's database holds every other
    # test's events too, and reading them all through the mapper takes minutes.
    recorded = Recorded(bot, last=loop.run_until_complete(
        conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
    ))  # fmt: skip

    def post(cases: list[Case]) -> list[int]:
        return loop.run_until_complete(post_all(url, cases))

    def query(sql: str, *args: Any) -> list[Any]:
        return loop.run_until_complete(conn.fetch(sql, *args))

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # no shrinking: each example is a real load on the stack
        suppress_health_check=list(HealthCheck),
    )
    @given(batches())
    def run(cases: list[Case]) -> None:
        ok_before, failed_before = dedup_handled(bot)
        statuses = post(cases)
        wrong = [
            (c.kind, s, c.body[:120])
            for c, s in zip(cases, statuses, strict=True)
            if s != (200 if c.signed else 401)
        ]
        assert wrong == [], wrong
        # Every delivery ingress took is handled by dedup, at its first attempt.
        taken = statuses.count(200)
        wait_for(
            lambda: dedup_handled(bot)[0] >= ok_before + taken,
            timeout=60,
            message="dedup handled every delivery of the batch",
        )
        assert dedup_handled(bot) == (ok_before + taken, failed_before)
        fence(bot, {cust for c in cases if c.fenced for cust in c.customers}, post)
        wamids = [w for c in cases for w in c.wamids]
        if wamids:
            assert recorded.all_received(wamids), "a valid message was not recorded"
        kept = [w for c in cases for w in c.kept]
        if kept:
            assert recorded.kept_somewhere(kept), (
                "a message with only a business-scoped id was lost"
            )
        tally.cases += len(cases)
        tally.valid_messages += len(wamids)
        for c in cases:
            tally.kinds[c.kind] = tally.kinds.get(c.kind, 0) + 1

    try:
        run()
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    assert bot.metric("dedup", "dead_lettered_messages_total") == dead_before
    elapsed = time.monotonic() - tally.started
    print(
        f"\nfuzz: {tally.cases} deliveries in {EXAMPLES} batches, {tally.valid_messages} valid"
        f" messages, {elapsed:.1f} s; {dict(sorted(tally.kinds.items()))}"
    )
    assert tally.cases == EXAMPLES * BATCH
