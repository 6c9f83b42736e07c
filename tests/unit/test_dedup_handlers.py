"""Dedup's handler with the in-memory store: large deliveries in bounded pieces, and one item
the store refuses never taking its neighbours to the dead letters."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from services.dedup import handlers
from services.dedup.handlers import record_delivery
from shared.broker.bus import Context
from shared.events.dedup import ItemRejected, MessageReceived, StatusReceived, quarantine_stream
from shared.eventstore import EventRejected, NewEvent, StreamWrite
from shared.eventstore.memory import InMemoryEventStore
from shared.payloads import messages_payload, status_payload
from shared.schemas import CustomerMessage, WebhookDelivery
from tests.support.fakes import dedup_deps


def ctx() -> Context:
    return Context(uuid.uuid4().hex, uuid.uuid4().hex, 0, "k")


class RefusingStore(InMemoryEventStore):
    """The in-memory store, refusing writes to the streams named, as PostgreSQL refuses a
    value it cannot hold; and counting the statements (append calls)."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse
        self.statements = 0

    async def append(
        self, stream: str, events: list[NewEvent], expected_version: Any = None
    ) -> Any:
        if stream in self.refuse:
            raise EventRejected("value too long for type")
        return await super().append(stream, events, expected_version)

    async def append_batch(self, writes: list[StreamWrite]) -> Any:
        self.statements += 1
        return await super().append_batch(writes)


def text(customer: str, body: str) -> dict[str, Any]:
    return {
        "from": customer,
        "id": f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def delivery(payload: dict[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=uuid.uuid4().hex, received_at=time.time(), body=json.dumps(payload)
    )


async def test_one_refused_item_is_quarantined_and_its_neighbours_recorded() -> None:
    customer = "391111"
    messages = [text(customer, "one"), text("392222", "two"), text(customer, "three")]
    store = RefusingStore({"inbox-100000000000001.392222"})
    webhook = delivery(messages_payload(messages, customer))

    outputs = await record_delivery(dedup_deps(store), webhook, ctx())

    forwarded = [p.message for p in outputs if isinstance(p.message, CustomerMessage)]
    assert [(m.event.message["text"]["body"], m.seq) for m in forwarded] == [
        ("one", 0),
        ("three", 1),
    ]
    [rejected] = await store.read_stream(quarantine_stream(webhook.delivery_id))
    assert isinstance(rejected.event, ItemRejected)
    assert (rejected.event.index, rejected.event.kind) == (1, "message")
    assert json.loads(base64.b64decode(rejected.event.item_base64)) == messages[1]
    # A redelivery records nothing twice, the rejection included.
    await record_delivery(dedup_deps(store), webhook, ctx())
    assert len(await store.read_stream(quarantine_stream(webhook.delivery_id))) == 1
    inbox = await store.read_stream(f"inbox-100000000000001.{customer}")
    assert [e.type for e in inbox] == ["MessageReceived", "MessageReceived"]


async def test_a_large_delivery_is_recorded_in_bounded_pieces_in_order() -> None:
    customer = "393333"
    count = handlers.PIECE * 2 + 7
    messages = [text(customer, str(n)) for n in range(count)]
    store = RefusingStore(set())

    outputs = await record_delivery(
        dedup_deps(store), delivery(messages_payload(messages, customer)), ctx()
    )

    assert store.statements == 3
    seqs = [p.message.seq for p in outputs if isinstance(p.message, CustomerMessage)]
    assert seqs == list(range(count))
    inbox = await store.read_stream(f"inbox-100000000000001.{customer}")
    bodies = [
        e.event.message["text"]["body"] for e in inbox if isinstance(e.event, MessageReceived)
    ]
    assert bodies == [str(n) for n in range(count)]


def routed(store: Any, **settings: str) -> Any:
    from services.dedup.handlers import deps_for
    from shared.config import Settings
    from shared.directory import Directory

    return deps_for(store, Directory(Settings(**settings), None))


async def test_an_item_for_a_number_nobody_owns_is_recorded_never_forwarded() -> None:
    """With the default business pinned to its own number, another number's customers are
    nobody's here: kept (nothing lost) with an empty business, and not answered."""
    store = InMemoryEventStore()
    deps = routed(store, whatsapp_phone_number_id="555")
    other = delivery(messages_payload([text("391", "hi")], "391", phone_number_id="556"))
    ours = delivery(messages_payload([text("391", "hi")], "391", phone_number_id="555"))

    assert await record_delivery(deps, other, ctx()) == []
    [forwarded] = await record_delivery(deps, ours, ctx())

    [kept] = await store.read_stream("inbox-556.391")
    assert isinstance(kept.event, MessageReceived) and kept.event.business_id == ""
    assert isinstance(forwarded.message, CustomerMessage)
    assert forwarded.message.event.business_id == "default"


async def test_a_delivery_signed_by_another_app_than_the_numbers_is_not_forwarded() -> None:
    store = InMemoryEventStore()
    webhook = delivery(messages_payload([text("392", "hi")], "392"))
    forged = WebhookDelivery(
        delivery_id=webhook.delivery_id, received_at=0.0, body=webhook.body, app="app_other"
    )
    assert await record_delivery(routed(store), forged, ctx()) == []
    assert await record_delivery(routed(store), webhook, ctx()) != []


def bsuid_message(body: str, user_id: str, wa_id: str | None = None) -> dict[str, Any]:
    message = text(wa_id or "", body)
    if wa_id is None:
        del message["from"]
    message["from_user_id"] = user_id
    return message


def bsuid_payload(message: dict[str, Any], user_id: str, wa_id: str | None) -> dict[str, Any]:
    payload = messages_payload([message], wa_id or user_id)
    contact: dict[str, Any] = {"profile": {"name": "Hidden"}, "user_id": user_id}
    if wa_id:
        contact["wa_id"] = wa_id
    payload["entry"][0]["changes"][0]["value"]["contacts"] = [contact]
    return payload


async def test_a_customer_is_one_conversation_whichever_id_meta_sends() -> None:
    """First seen by the business-scoped user id only (the number hidden), then with both
    ids, then with the wa_id only: one key, one conversation, in order."""
    store = InMemoryEventStore()
    deps = routed(store)
    user_id, wa_id = (
        "BR.1502" + uuid.uuid4().hex[:8],
        "39" + uuid.uuid4().hex[:8].translate(str.maketrans("abcdef", "123456")),
    )
    messages = [
        bsuid_payload(bsuid_message("one", user_id), user_id, None),
        bsuid_payload(bsuid_message("two", user_id, wa_id), user_id, wa_id),
        messages_payload([text(wa_id, "three")], wa_id),
    ]
    forwarded = []
    for payload in messages:
        [out] = await record_delivery(deps, delivery(payload), ctx())
        forwarded.append(out.message)
    assert {m.conversation_id for m in forwarded} == {f"100000000000001.{user_id}"}
    assert [m.seq for m in forwarded] == [0, 1, 2]
    assert [(m.event.wa_id, m.event.user_id) for m in forwarded] == [
        ("", user_id),
        (wa_id, user_id),
        (wa_id, ""),
    ]
    # Another process (a fresh cache) agrees, from the recorded links alone.
    [again] = await record_delivery(
        routed(store), delivery(messages_payload([text(wa_id, "four")], wa_id)), ctx()
    )
    assert again.message.conversation_id == f"100000000000001.{user_id}"


async def test_statuses_whose_errors_are_not_a_list_are_recorded_readable() -> None:
    """Seen by the fuzz test: `errors` a number made the handler raise on every attempt (the
    delivery went to the dead letters), a string was recorded as an event no reader could
    decode. Both are kept as the status, with the odd value in `raw` only."""
    store = InMemoryEventStore()
    payload = status_payload("wamid.a", "failed", "391111")
    statuses = payload["entry"][0]["changes"][0]["value"]["statuses"]
    statuses[0]["errors"] = 1.5
    statuses.append({**statuses[0], "id": "wamid.b", "errors": "oops"})
    statuses.append({**statuses[0], "id": "wamid.c", "errors": [{"code": 131047}, 7]})

    await record_delivery(dedup_deps(store), delivery(payload), ctx())

    found = {}
    for wamid in ("wamid.a", "wamid.b", "wamid.c"):
        [recorded] = await store.read_stream(f"message-{wamid}")
        assert isinstance(recorded.event, StatusReceived), recorded  # read back, typed
        found[wamid] = recorded.event
    assert found["wamid.a"].errors == [] and found["wamid.a"].raw["errors"] == 1.5
    assert found["wamid.b"].errors == [] and found["wamid.b"].raw["errors"] == "oops"
    assert found["wamid.c"].errors == [{"code": 131047}, 7]


class CountingReads(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def read_stream(self, stream: str, *args: Any, **kwargs: Any) -> Any:
        self.reads.append(stream)
        return await super().read_stream(stream, *args, **kwargs)


async def test_statuses_of_a_recipient_who_never_wrote_read_their_identity_once() -> None:
    """A campaign's recipient has no link: their statuses (sent, delivered, read) go to the
    key their first message would get, looked up once, not once per status; once they write
    and are linked, their statuses follow the link."""
    store = CountingReads()
    deps = dedup_deps(store)
    wamid = f"wamid.{uuid.uuid4().hex}"
    updates = []
    for status in ("sent", "delivered", "read"):
        payload = status_payload(wamid, status, "394444")
        updates += await record_delivery(deps, delivery(payload), ctx())
    assert len({u.message.conversation_id for u in updates}) == 1
    assert len([s for s in store.reads if s.startswith("identity-")]) == 1
    # They write, first by a user id beside the number (so the link is theirs to make).
    message = bsuid_message("hi", "US.9", "394444")
    [sent] = await record_delivery(deps, delivery(bsuid_payload(message, "US.9", "394444")), ctx())
    again = await record_delivery(
        deps, delivery(status_payload(f"wamid.{uuid.uuid4().hex}", "sent", "394444")), ctx()
    )
    assert [u.message.conversation_id for u in again] == [sent.message.conversation_id]
