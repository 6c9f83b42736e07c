"""Outbound handlers + Graph client against the real FakeGraphAPI (HTTP on loopback)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client import REGISTRY

from services.dedup.handlers import record_delivery
from services.outbound.graph import GraphClient
from services.outbound.handlers import (
    Deps,
    mark_read,
    message_stream,
    outbox_stream,
    send_message,
    track_status,
)
from services.outbound.lifecycle import fold
from services.outbound.ratelimit import RateLimiter
from shared.broker.bus import Context
from shared.config import Settings
from shared.directory import Directory, Number
from shared.errors import RetryLater
from shared.events.outbound import SendAttemptFailed, SendStarted
from shared.eventstore import NewEvent, RecordedEvent
from shared.eventstore.memory import InMemoryEventStore
from shared.payloads import status_payload
from shared.resilience import UpstreamError, Upstreams
from shared.schemas import MarkRead, SendMessage, StatusUpdate, WebhookDelivery
from tests.conftest import GRAPH_ACCESS_TOKEN
from tests.support import pywa
from tests.support.fakes import FakeGraphAPI, Fault, dedup_deps, meta_error, sends_to

PHONE = "100000000000001"
MAX_TRIES = 3


def data(recorded: RecordedEvent) -> dict[str, Any]:
    return msgspec.to_builtins(recorded.event)


def new_customer() -> str:
    return "39" + "".join(random.choice("0123456789") for _ in range(10))


def ctx() -> Context:
    return Context(uuid.uuid4().hex, uuid.uuid4().hex, 0, "")


def uncertain_sends() -> float:
    return REGISTRY.get_sample_value("outbound_uncertain_sends_total") or 0.0


@dataclass
class Outbound:
    graph_api: FakeGraphAPI
    store: InMemoryEventStore
    deps: Deps
    customer: str

    def command(
        self, text: str = "hello", command_id: str | None = None, read: str = ""
    ) -> SendMessage:
        return SendMessage(
            command_id=command_id or str(uuid.uuid4()),
            conversation_id=f"{PHONE}.{self.customer}",
            phone_number_id=PHONE,
            to=self.customer,
            payload={"type": "text", "text": {"body": text, "preview_url": False}},
            seq=0,
            read=read,
        )

    async def outbox(self, cmd: SendMessage) -> list[str]:
        return [e.type for e in await self.store.read_stream(outbox_stream(cmd.command_id))]

    async def outbox_events(self, cmd: SendMessage) -> list[Any]:
        return await self.store.read_stream(outbox_stream(cmd.command_id))

    def sends(self) -> list[Any]:
        return self.graph_api.requests_matching(sends_to(self.customer))


def make_deps(
    store: InMemoryEventStore, session: aiohttp.ClientSession, url: str, **kw: Any
) -> Deps:
    upstreams = Upstreams(
        "whatsapp",
        session,
        kw.pop("timeout", 2.0),
        fail_max=kw.pop("fail_max", 5),
        reset_timeout=kw.pop("reset_timeout", 30.0),
        max_tries=MAX_TRIES,
        backoff_factor=0.01,
    )
    token = kw.pop("token", GRAPH_ACCESS_TOKEN)
    directory = Directory(Settings(whatsapp_access_token=token), None)
    return Deps(store, GraphClient(upstreams, url + "/v23.0"), RateLimiter(1000.0), directory)


@pytest.fixture
async def ob(fake_graph: FakeGraphAPI) -> AsyncIterator[Outbound]:
    async with aiohttp.ClientSession() as session:
        store = InMemoryEventStore()
        yield Outbound(fake_graph, store, make_deps(store, session, fake_graph.url), new_customer())


async def test_success_records_send_succeeded_and_message_sent(ob: Outbound) -> None:
    cmd = ob.command("hi there")
    assert await send_message(cmd, ctx(), ob.deps) == []

    [sent] = ob.graph_api.sent_to(ob.customer)
    assert sent["phone_number_id"] == PHONE
    assert sent["body"]["text"]["body"] == "hi there"
    assert sent["body"]["messaging_product"] == "whatsapp"
    events = await ob.outbox_events(cmd)
    assert [e.type for e in events] == ["SendStarted", "SendSucceeded"]
    assert data(events[1])["wamid"] == sent["wamid"]
    [message_sent] = await ob.store.read_stream(message_stream(sent["wamid"]))
    assert message_sent.type == "MessageSent"
    assert data(message_sent)["command_id"] == cmd.command_id
    assert data(message_sent)["conversation_id"] == cmd.conversation_id
    assert data(message_sent)["payload"] == cmd.payload
    assert data(message_sent)["dry_run"] is False


async def test_redelivered_command_sends_nothing_again(ob: Outbound) -> None:
    cmd = ob.command()
    await send_message(cmd, ctx(), ob.deps)
    await send_message(cmd, ctx(), ob.deps)
    assert len(ob.graph_api.sent_to(ob.customer)) == 1
    assert await ob.outbox(cmd) == ["SendStarted", "SendSucceeded"]


async def test_a_first_delivery_writes_without_reading_its_outbox(ob: Outbound) -> None:
    reads: list[str] = []
    read_stream = ob.store.read_stream

    async def counting(stream: str, from_version: int = 0) -> list[Any]:
        reads.append(stream)
        return await read_stream(stream, from_version)

    ob.store.read_stream = counting  # type: ignore[method-assign]
    cmd = ob.command()
    await send_message(cmd, ctx(), ob.deps)
    assert reads == []
    # A redelivery finds the outbox taken and reads it to decide: nothing more to send.
    await send_message(cmd, ctx(), ob.deps)
    assert reads == [outbox_stream(cmd.command_id)]
    assert len(ob.graph_api.sent_to(ob.customer)) == 1


async def test_a_redelivery_after_a_failed_attempt_sends_the_next_attempt(ob: Outbound) -> None:
    cmd = ob.command("second try")
    await ob.store.append(
        outbox_stream(cmd.command_id),
        [
            NewEvent(SendStarted(attempt=1, conversation_id=cmd.conversation_id)),
            NewEvent(SendAttemptFailed(attempt=1, error="ServerError")),
        ],
    )
    before = uncertain_sends()

    await send_message(cmd, ctx(), ob.deps)

    assert len(ob.graph_api.sent_to(ob.customer)) == 1
    events = await ob.outbox_events(cmd)
    assert [e.type for e in events][2:] == ["SendStarted", "SendSucceeded"]
    assert data(events[2])["attempt"] == 2
    assert uncertain_sends() == before  # it ended cleanly: not an interrupted send


async def test_interrupted_send_is_counted_recorded_and_sent(ob: Outbound) -> None:
    cmd = ob.command("after the crash")
    # A previous attempt crashed inside the Graph API call: SendStarted is the last event.
    await ob.store.append(
        outbox_stream(cmd.command_id),
        [NewEvent(SendStarted(attempt=1, conversation_id=cmd.conversation_id))],
    )
    before = uncertain_sends()

    await send_message(cmd, ctx(), ob.deps)

    assert uncertain_sends() == before + 1
    events = await ob.outbox_events(cmd)
    assert [e.type for e in events] == [
        "SendStarted",
        "SendInterrupted",
        "SendStarted",
        "SendSucceeded",
    ]
    assert data(events[2])["attempt"] == 2
    assert ob.graph_api.texts_to(ob.customer) == ["after the crash"]
    # Every event the send recorded names the conversation: one key seals them all (the
    # conversation's, which its erasure destroys), never a key made for this send.
    assert {data(e)["conversation_id"] for e in events} == {cmd.conversation_id}


async def test_window_closed_131047_is_a_permanent_failure(ob: Outbound) -> None:
    ob.graph_api.inject(meta_error(131047, 400, match=sends_to(ob.customer)))
    cmd = ob.command()

    assert await send_message(cmd, ctx(), ob.deps) == []

    events = await ob.outbox_events(cmd)
    assert [e.type for e in events] == ["SendStarted", "SendFailed"]
    assert data(events[-1])["code"] == 131047
    assert data(events[-1])["status"] == 400
    assert len(ob.sends()) == 1, "a permanent refusal is not retried"
    assert ob.graph_api.sent == []
    # Redelivered: the outbox is finished, nothing is sent.
    await send_message(cmd, ctx(), ob.deps)
    assert len(ob.sends()) == 1


async def test_permanent_refusals_do_not_open_the_breaker(
    fake_graph: FakeGraphAPI,
) -> None:
    # Closed 24 h windows are routine: they must not stop replies to everyone else.
    async with aiohttp.ClientSession() as session:
        store = InMemoryEventStore()
        deps = make_deps(store, session, fake_graph.url, fail_max=2)
        ob = Outbound(fake_graph, store, deps, new_customer())
        fake_graph.fail_always(meta_error(131047, 400, match=sends_to(ob.customer)))
        for _ in range(4):
            cmd = ob.command()
            await send_message(cmd, ctx(), deps)
            assert (await ob.outbox(cmd))[-1] == "SendFailed"
        other = Outbound(fake_graph, store, deps, new_customer())
        await send_message(other.command("still works"), ctx(), deps)
    assert fake_graph.texts_to(other.customer) == ["still works"]


@pytest.mark.parametrize("code", [130429, 131056])
async def test_throttling_codes_retry_later_without_failing(ob: Outbound, code: int) -> None:
    ob.graph_api.inject(meta_error(code, 400, match=sends_to(ob.customer)))
    cmd = ob.command("throttled")
    before = uncertain_sends()

    with pytest.raises(RetryLater) as caught:
        await send_message(cmd, ctx(), ob.deps)

    assert caught.value.delay > 0
    assert len(ob.sends()) == 1, "throttling is waited out in the lane, not hammered"
    types = await ob.outbox(cmd)
    assert "SendFailed" not in types
    assert types[-1] == "SendAttemptFailed"

    # The retry sends it; the clean failure is not mistaken for a crash.
    await send_message(cmd, ctx(), ob.deps)
    assert ob.graph_api.texts_to(ob.customer) == ["throttled"]
    assert "SendInterrupted" not in await ob.outbox(cmd)
    assert uncertain_sends() == before


async def test_retry_after_header_sets_the_delay(ob: Outbound) -> None:
    ob.graph_api.inject(
        meta_error(130429, 429, headers={"Retry-After": "7"}, match=sends_to(ob.customer))
    )
    with pytest.raises(RetryLater) as caught:
        await send_message(ob.command(), ctx(), ob.deps)
    assert caught.value.delay == 7.0


@pytest.mark.parametrize(
    "fault", [Fault(status=500), meta_error(131000, 500)], ids=["bare-500", "meta-500"]
)
async def test_server_error_then_success_is_retried_inside_the_call(
    ob: Outbound, fault: Fault
) -> None:
    fault.match = sends_to(ob.customer)
    ob.graph_api.inject(fault)
    cmd = ob.command("second time lucky")

    await send_message(cmd, ctx(), ob.deps)

    assert len(ob.sends()) == 2
    assert ob.graph_api.texts_to(ob.customer) == ["second time lucky"]
    assert await ob.outbox(cmd) == ["SendStarted", "SendSucceeded"]


async def test_persistent_server_errors_give_up_after_max_tries(ob: Outbound) -> None:
    ob.graph_api.fail_always(Fault(status=503, match=sends_to(ob.customer)))
    cmd = ob.command()

    with pytest.raises(UpstreamError) as caught:
        await send_message(cmd, ctx(), ob.deps)

    assert caught.value.transient
    assert len(ob.sends()) == MAX_TRIES
    assert await ob.outbox(cmd) == ["SendStarted", "SendAttemptFailed"]
    failed = (await ob.outbox_events(cmd))[-1]
    assert data(failed)["conversation_id"] == cmd.conversation_id  # its key: the conversation's


async def test_rejected_token_retries_later(fake_graph: FakeGraphAPI) -> None:
    async with aiohttp.ClientSession() as session:
        store = InMemoryEventStore()
        deps = make_deps(store, session, fake_graph.url, token="revoked-token")
        ob = Outbound(fake_graph, store, deps, new_customer())
        cmd = ob.command()
        with pytest.raises(RetryLater) as caught:
            await send_message(cmd, ctx(), deps)
    assert caught.value.delay > 0
    assert len(ob.sends()) == 1
    assert fake_graph.sent == []
    assert "SendFailed" not in await ob.outbox(cmd)


async def test_expired_token_code_190_retries_later(ob: Outbound) -> None:
    ob.graph_api.inject(meta_error(190, 400, match=sends_to(ob.customer)))
    cmd = ob.command()
    with pytest.raises(RetryLater):
        await send_message(cmd, ctx(), ob.deps)
    assert "SendFailed" not in await ob.outbox(cmd)


async def test_mark_read_is_one_try_and_never_raises(ob: Outbound) -> None:
    cmd = MarkRead(conversation_id=f"{PHONE}.{ob.customer}", phone_number_id=PHONE, wamid="wamid.X")
    await mark_read(cmd, ctx(), ob.deps)
    assert ob.graph_api.read_message_ids() == ["wamid.X"]

    ob.graph_api.inject(Fault(status=500))
    await mark_read(
        MarkRead(conversation_id=cmd.conversation_id, phone_number_id=PHONE, wamid="wamid.Y"),
        ctx(),
        ob.deps,
    )
    reads = [r for r in ob.graph_api.requests if (r.json or {}).get("status") == "read"]
    assert [r.json["message_id"] for r in reads] == ["wamid.X", "wamid.Y"]


async def test_a_read_mark_carried_by_the_send_goes_once_without_typing(ob: Outbound) -> None:
    cmd = ob.command("hi", read="wamid.CARRIED")
    await send_message(cmd, ctx(), ob.deps)
    await send_message(cmd, ctx(), ob.deps)  # redelivered: neither sent nor marked again

    reads = [r.json for r in ob.graph_api.requests if (r.json or {}).get("status") == "read"]
    assert [r["message_id"] for r in reads] == ["wamid.CARRIED"]
    # "typing..." could reach Meta after the reply and show below it.
    assert "typing_indicator" not in reads[0]
    assert [s["body"]["text"]["body"] for s in ob.graph_api.sent_to(ob.customer)] == ["hi"]


async def test_a_failing_read_mark_does_not_hold_back_the_send(ob: Outbound) -> None:
    ob.graph_api.inject(Fault(status=500, match=lambda r: (r.json or {}).get("status") == "read"))
    cmd = ob.command("still sent", read="wamid.R")
    await send_message(cmd, ctx(), ob.deps)
    assert [s["body"]["text"]["body"] for s in ob.graph_api.sent_to(ob.customer)] == ["still sent"]
    assert await ob.outbox(cmd) == ["SendStarted", "SendSucceeded"]


async def test_dry_run_records_without_sending(ob: Outbound) -> None:
    deps = replace(ob.deps, directory=Directory(Settings(whatsapp_access_token=""), None))
    cmd = ob.command()
    await send_message(cmd, ctx(), deps)
    assert await ob.outbox(cmd) == ["SendStarted", "SendSucceeded"]
    assert ob.graph_api.requests == []


# --- delivery statuses -------------------------------------------------------------------------


async def send_one(ob: Outbound) -> str:
    await send_message(ob.command(), ctx(), ob.deps)
    [sent] = ob.graph_api.sent_to(ob.customer)
    return str(sent["wamid"])


async def receive_status(
    ob: Outbound, wamid: str, status: str, errors: list[dict[str, Any]] | None = None
) -> None:
    """Record the status the way dedup does, then let outbound fold it."""
    payload = status_payload(
        wamid, status, ob.customer, PHONE, timestamp=str(int(time.time())), errors=errors
    )
    delivery = WebhookDelivery(uuid.uuid4().hex, time.time(), json.dumps(payload))
    [publish] = await record_delivery(dedup_deps(ob.store), delivery, ctx())
    assert isinstance(publish.message, StatusUpdate)
    assert await track_status(publish.message, ctx(), ob.deps) == []


async def lifecycle(ob: Outbound, wamid: str) -> list[dict[str, Any]]:
    events = await ob.store.read_stream(message_stream(wamid))
    return [data(e) for e in events if e.type == "LifecycleChanged"]


async def test_statuses_in_order_advance_the_lifecycle(ob: Outbound) -> None:
    wamid = await send_one(ob)
    for status in ("sent", "delivered", "read"):
        await receive_status(ob, wamid, status)
    changes = await lifecycle(ob, wamid)
    assert [c["status"] for c in changes] == ["sent", "delivered", "read"]
    assert [c["previous"] for c in changes] == ["unknown", "sent", "delivered"]
    assert all(c["conversation_id"] == f"{PHONE}.{ob.customer}" for c in changes)


async def test_out_of_order_statuses_never_move_back(ob: Outbound) -> None:
    wamid = await send_one(ob)
    for status in ("read", "sent", "delivered"):
        await receive_status(ob, wamid, status)
    assert [c["status"] for c in await lifecycle(ob, wamid)] == ["read"]
    assert (
        fold([e.event for e in await ob.store.read_stream(message_stream(wamid))]).status == "read"
    )


async def test_a_repeated_status_records_nothing_new(ob: Outbound) -> None:
    wamid = await send_one(ob)
    await receive_status(ob, wamid, "delivered")
    await receive_status(ob, wamid, "delivered")
    assert [c["status"] for c in await lifecycle(ob, wamid)] == ["delivered"]


async def test_failed_is_final_and_keeps_its_errors(ob: Outbound) -> None:
    errors = pywa.status("message_status:failed")["errors"]
    wamid = await send_one(ob)
    await receive_status(ob, wamid, "sent")
    await receive_status(ob, wamid, "failed", errors=errors)
    await receive_status(ob, wamid, "delivered")
    await receive_status(ob, wamid, "read")

    changes = await lifecycle(ob, wamid)
    assert [c["status"] for c in changes] == ["sent", "failed"]
    assert changes[-1]["errors"] == errors
    life = fold([e.event for e in await ob.store.read_stream(message_stream(wamid))])
    assert (life.status, life.errors) == ("failed", errors)


async def test_each_number_sends_with_its_own_token_and_a_user_id_by_recipient(
    ob: Outbound,
) -> None:
    """Two businesses' numbers: each send carries its own number's token (never another's),
    and a customer known only by a business-scoped user id is addressed as `recipient`."""
    own, other = "200000000000001", "200000000000002"
    ob.graph_api.tokens.update({own: "token-of-own", other: "token-of-other"})
    for pid, token in ((own, "token-of-own"), (other, "token-of-other")):
        ob.deps.directory.snapshot.numbers[pid] = Number(
            phone_number_id=pid, business_id=f"biz-{pid}", access_token=token
        )
    user_id = "BR.15029" + uuid.uuid4().hex[:8]
    for pid, to in ((own, ob.customer), (other, user_id)):
        cmd = msgspec.structs.replace(ob.command(), phone_number_id=pid, to=to)
        await send_message(cmd, ctx(), ob.deps)
    sent = {s["phone_number_id"]: s for s in ob.graph_api.sent}
    assert sent[own]["token"] == "token-of-own" and sent[own]["addressed_by"] == "to"
    assert sent[other]["token"] == "token-of-other" and sent[other]["to"] == user_id
    assert sent[other]["addressed_by"] == "recipient" and "to" not in sent[other]["body"]
