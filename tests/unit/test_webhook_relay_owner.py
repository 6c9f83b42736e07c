"""Whose event is it: each catalogue event is placed in its business (from the event, its
number, its conversation's number or its WABA) and fanned out to that business's endpoints
only; an event nobody owns goes nowhere."""

from __future__ import annotations

from dataclasses import dataclass

from services.webhook_relay import domain
from services.webhook_relay.catalogue import MAPPINGS
from services.webhook_relay.fanout import deliveries_for
from services.webhook_relay.owner import owners_of
from services.webhook_relay.signing import generate_secret
from shared.events import ALL
from shared.events.conversation import BotReplied, FlowCompleted, TurnFailed
from shared.events.dedup import ChangeReceived, MessageReceived
from shared.events.media import MediaTranscribed
from shared.events.outbound import LifecycleChanged, MessageSent, SendStarted
from tests.unit.test_webhook_relay import NOW, recorded


@dataclass(frozen=True)
class FakeNumber:
    business_id: str


class FakeDirectory:
    """Number 111 is A's, 222 is B's, WABA 9 is B's; counts lookups."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def number(self, phone_number_id: str) -> FakeNumber | None:
        self.lookups.append(phone_number_id)
        return {"111": FakeNumber("biz_a"), "222": FakeNumber("biz_b")}.get(phone_number_id)

    def business_of_waba(self, waba_id: str) -> str | None:
        return {"9": "biz_b"}.get(waba_id)


def endpoint(business: str) -> domain.Endpoint:
    ep, _ = domain.create(
        domain.new_endpoint_id(), "https://crm", "", (), generate_secret(), NOW, business
    )
    return ep


async def test_each_event_is_placed_in_its_business() -> None:
    directory = FakeDirectory()
    received = MessageReceived(
        conversation_id="222.7",
        business_id="biz_b",
        phone_number_id="222",
        customer="7",
        wamid="w",
        message={},
    )
    events = [
        recorded(received, "inbox-222.7"),  # names its business
        recorded(BotReplied(seq=0, text="t", command_id="c"), "conversation-111.7"),
        recorded(TurnFailed(seq=1, error="x"), "conversation-222.7"),
        recorded(FlowCompleted(seq=1, name="lead"), "conversation-222.7"),
        recorded(
            MessageSent(wamid="m", command_id="c", conversation_id="", phone_number_id="111"),
            "message-m",
        ),
        recorded(LifecycleChanged(wamid="m", status="read", conversation_id="111.7"), "message-m"),
        recorded(MediaTranscribed(wamid="v"), "media-v"),  # its conversation looked up: 222
        recorded(ChangeReceived(waba_id="9", field="calls"), "account-9"),
        recorded(ChangeReceived(waba_id="5", field="calls"), "account-5"),  # nobody's WABA
        recorded(BotReplied(seq=0, text="t", command_id="c"), "conversation-333.7"),  # nobody's
        recorded(SendStarted(attempt=1), "outbox-c"),  # not in the catalogue
    ]
    owners = await owners_of(events, directory, {"media-v": "222.7"})
    assert [owners.get(e.id) for e in events] == [
        "biz_b", "biz_a", "biz_b", "biz_b", "biz_a", "biz_a", "biz_b", "biz_b", None, None, None,
    ]  # fmt: skip
    assert sorted(directory.lookups) == ["111", "222", "333"]  # once per number and batch

    a, b = endpoint("biz_a"), endpoint("biz_b")
    rows = deliveries_for(events, [a, b], owners=owners, conversations={"media-v": "222.7"})
    to_a = [r.event_type for r in rows if r.endpoint_id == a.endpoint_id]
    to_b = [r.event_type for r in rows if r.endpoint_id == b.endpoint_id]
    assert to_a == ["conversation.reply", "message.sent", "message.status"]
    assert to_b == [
        "message.received", "conversation.failed", "flow.completed", "media.transcribed",
        "account.change",
    ]  # fmt: skip


async def test_without_a_directory_every_event_is_the_default_business() -> None:
    events = [recorded(BotReplied(seq=0, text="t", command_id="c"), "conversation-111.7")]
    owners = await owners_of(events, None)
    assert owners == {events[0].id: "default"}
    default, other = endpoint("default"), endpoint("biz_a")
    rows = deliveries_for(events, [default, other], owners=owners)
    assert [r.endpoint_id for r in rows] == [default.endpoint_id]
    assert [r.endpoint_id for r in deliveries_for(events, [default, other])] == [
        default.endpoint_id
    ]


# The catalogue's events written on a conversation's own stream (its id is the stream's).
ON_CONVERSATION_STREAMS = {"BotReplied", "TurnFailed", "FlowCompleted"}
PLACING_FIELDS = {"business_id", "phone_number_id", "conversation_id", "waba_id"}


def test_every_catalogue_event_can_be_placed_in_a_business() -> None:
    """An event of the catalogue must say whose it is (a business, a number, a conversation
    or a WABA), else no endpoint ever gets it: a new mapping without any of these fails
    here rather than silently sending nothing."""
    by_name = {cls.__name__: cls for cls in ALL}
    unplaced = [
        m.source
        for m in MAPPINGS
        if m.source not in ON_CONVERSATION_STREAMS
        and not PLACING_FIELDS & set(by_name[m.source].__struct_fields__)
    ]
    assert unplaced == []
