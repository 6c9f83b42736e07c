"""Rows as the services wrote them before events were typed still load, typed, through the
PostgreSQL store: one row of every event type in exactly the shape the old code wrote
(`NewEvent(type, data)` dicts, no schema version in the metadata), inserted with plain SQL.
Plus what the mapper does with versions, unknown types and rows that do not fit."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from shared import events
from shared.events.conversation import BotReplied, CustomerWrote, MediaRequested
from shared.events.dedup import MessageReceived
from shared.eventstore import NewEvent, Undecodable, Unrecognised
from shared.eventstore.mapper import SCHEMA_KEY, Mapper, UndecodableEvent, Upcaster
from shared.eventstore.postgres import PostgresEventStore
from shared.observability import metrics

CID = "100000000000001.391234567890"
BASE = {
    "seq": 3,
    "wamid": "wamid.A",
    "type": "text",
    "customer_name": "Ada",
    "timestamp": "1700000000",
}
# One row per type, the data exactly as the code before typed events wrote it.
LEGACY: dict[str, dict[str, Any]] = {
    "MessageReceived": {
        "conversation_id": CID,
        "waba_id": "200",
        "phone_number_id": "100000000000001",
        "display_phone_number": "15550009999",
        "customer": "391234567890",
        "customer_name": "Ada",
        "wamid": "wamid.A",
        "type": "text",
        "timestamp": "1700000000",
        "message": {
            "from": "391234567890",
            "id": "wamid.A",
            "type": "text",
            "text": {"body": "hi"},
        },
        "contact": {"profile": {"name": "Ada"}, "wa_id": "391234567890"},
        "delivery_id": "d1",
        "received_at": 1700000000.5,
    },
    "StatusReceived": {
        "wamid": "wamid.B",
        "status": "read",
        "timestamp": "1700000001",
        "recipient_id": "391234567890",
        "conversation_id": CID,
        "phone_number_id": "100000000000001",
        "errors": [],
        "raw": {"id": "wamid.B", "status": "read"},
        "delivery_id": "d2",
    },
    "ChangeReceived": {"waba_id": "200", "field": "account_update", "value": {"x": 1}},
    "MalformedDeliveryReceived": {
        "delivery_id": "d3",
        "received_at": 1.0,
        "body_base64": "e30=",
        "body_preview": "{}",
    },
    "CustomerWrote": {**BASE, "text": "hi", "detail": {}},
    "CustomerReacted": {**BASE, "type": "reaction", "target": "wamid.Z", "emoji": "👍"},
    "CustomerEdited": {**BASE, "type": "edit", "target": "wamid.Z", "text": "hello"},
    "CustomerDeleted": {**BASE, "type": "revoke", "target": "wamid.Z"},
    "SystemNotice": {**BASE, "type": "system", "body": "changed number", "detail": {}},
    "UnsupportedReceived": {**BASE, "type": "unsupported", "detail": {"type": "x"}},
    "MediaRequested": {
        **BASE,
        "type": "audio",
        "kind": "audio",
        "media_id": "m1",
        "voice": True,
        "media": {"id": "m1", "voice": True},
        "described": "[voice note]",
        "phone_number_id": "100000000000001",
        "customer": "391234567890",
        "received_at": 1.5,
        "trigger": "customer:3",
    },
    "BotReplied": {
        "seq": 3,
        "text": "hello",
        "in_reply_to": "wamid.A",
        "responder": "openai",
        "command_id": "c1",
        "delivery": "media",
        "voice": True,
    },
    "TurnFailed": {"seq": 4, "error": "boom"},
    "SendStarted": {"attempt": 1, "conversation_id": CID, "seq": 3},
    "SendSucceeded": {"wamid": "wamid.B"},
    "SendFailed": {"status": 400, "code": 131047, "title": "Re-engagement", "seq": 3},
    "SendAttemptFailed": {"attempt": 1, "error": "ServerError"},
    "SendInterrupted": {"attempt": 1},
    "MessageSent": {
        "wamid": "wamid.B",
        "command_id": "c1",
        "conversation_id": CID,
        "phone_number_id": "100000000000001",
        "seq": 3,
        "payload": {"type": "text", "text": {"body": "hello"}},
        "dry_run": False,
    },
    "LifecycleChanged": {
        "wamid": "wamid.B",
        "status": "read",
        "previous": "sent",
        "errors": [],
        "conversation_id": CID,
    },
    "MediaStored": {
        "conversation_id": CID,
        "seq": 3,
        "wamid": "wamid.A",
        "phone_number_id": "100000000000001",
        "kind": "image",
        "media_id": "m1",
        "caption": "",
        "filename": "",
        "voice": False,
        "animated": False,
        "message_media": {"id": "m1"},
        "sha256": "ab" * 32,
        "sha256_verified": True,
        "size": 10,
        "mime_type": "image/jpeg",
        "store": "local",
        "store_key": "sha256/ab/abab",
        "deduplicated": False,
        "url_fetches": 1,
    },
    "MediaTranscribed": {
        "conversation_id": CID,
        "wamid": "wamid.A",
        "seq": 3,
        "text": "hi",
        "available": True,
        "transcriber": "openai",
        "model": "whisper-1",
    },
    "MediaAttemptFailed": {
        "conversation_id": CID,
        "wamid": "wamid.A",
        "seq": 3,
        "attempt": 1,
        "stage": "download",
        "reason": "timeout",
        "error": "TimeoutError",
    },
    "MediaFailed": {
        "conversation_id": CID,
        "wamid": "wamid.A",
        "seq": 3,
        "kind": "image",
        "media_id": "m1",
        "stage": "download",
        "reason": "not_found",
        "error": "404",
        "attempts": 1,
    },
    "VoiceReplyPrepared": {
        "command_id": "c1",
        "conversation_id": CID,
        "seq": 3,
        "media_id": "m2",
        "sha256": "cd",
        "size": 5,
        "store_key": "k",
    },
    "VoiceReplyFellBack": {
        "command_id": "c1",
        "conversation_id": CID,
        "seq": 3,
        "reason": "elevenlabs_500",
        "error": "x",
    },
    "MediaUploaded": {
        "command_id": "c1",
        "conversation_id": CID,
        "phone_number_id": "100000000000001",
        "kind": "image",
        "store_key": "k",
        "mime_type": "image/jpeg",
        "media_id": "m3",
    },
    "EndpointCreated": {
        "endpoint_id": "ep_1",
        "url": "https://crm.example/hook",
        "description": "",
        "event_types": [],
        "secret_fingerprint": "fp",
    },
    "EndpointUpdated": {"endpoint_id": "ep_1", "description": "new"},
    "EndpointSecretRotated": {
        "endpoint_id": "ep_1",
        "secret_fingerprint": "fp2",
        "previous_fingerprints": ["fp"],
        "previous_valid_until": "2026-01-01T00:00:00+00:00",
    },
    "EndpointDisabled": {"endpoint_id": "ep_1", "reason": "410"},
    "EndpointEnabled": {"endpoint_id": "ep_1"},
    "EndpointDeleted": {"endpoint_id": "ep_1"},
    "DeliveriesReplayed": {
        "endpoint_id": "ep_1",
        "scope": "since",
        "count": 2,
        "since": "2026-01-01T00:00:00+00:00",
        "until": None,
    },
}


def test_every_event_type_has_a_legacy_row_here_unless_it_is_new() -> None:
    new_since = {
        "ReplySpoken",
        "ReplyNotSpoken",
        "ReplyWithdrawn",
        "ItemRejected",
        "IdentityLinked",
        "BusinessWrote",
        "BusinessReleased",
        "HandedOff",
        "Released",
        "Closed",
        "Reopened",
        "BotStateChanged",
        "BotActed",
        "FlowCompleted",
        "FlowTimedOut",
        "PhoneAppWrote",
        "EchoReceived",
        "BotPublished",
        "MarketingPreferenceReceived",
        "MediaExpired",
        *(cls.__name__ for cls in events.business.EVENTS),
        *(cls.__name__ for cls in events.campaigns.EVENTS),
    }  # written only by the typed code
    assert {cls.__name__ for cls in events.ALL} - new_since == set(LEGACY)


async def _insert(pool: asyncpg.Pool, stream: str, type_: str, data: dict[str, Any]) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "SELECT append_to_stream($1, NULL, $2, $3, $4, $5)",
            stream,
            [uuid.uuid4()],
            [type_],
            [data],
            [{"correlation_id": "x"}],
        )


async def test_rows_written_before_typed_events_load_typed(pg_pool: asyncpg.Pool) -> None:
    store = PostgresEventStore(pg_pool)
    for type_, data in LEGACY.items():
        stream = f"legacy{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex}"
        await _insert(pg_pool, stream, type_, data)
        [recorded] = await store.read_stream(stream)
        assert type(recorded.event).__name__ == type_
        assert recorded.type == type_
        # Every field the old row had that the type still declares keeps its value.
        fields = set(type(recorded.event).__struct_fields__)
        for key in fields & set(data):
            if not (type_ == "BotReplied" and key in ("delivery", "voice")):
                assert getattr(recorded.event, key) == data[key], (type_, key)


async def test_a_schema_1_voice_reply_is_upcast_to_nothing_awaited(pg_pool: asyncpg.Pool) -> None:
    """Before, a voice reply went out through the media service by itself; after the
    upgrade nothing waits for it: the upcaster drops `delivery`/`voice`, `speak` is false."""
    store = PostgresEventStore(pg_pool)
    stream = f"conversation-{uuid.uuid4().hex}"
    await _insert(pg_pool, stream, "BotReplied", LEGACY["BotReplied"])
    [recorded] = await store.read_stream(stream)
    assert isinstance(recorded.event, BotReplied)
    assert recorded.event.speak is False
    assert recorded.event.command_id == "c1"


async def test_typed_events_record_their_schema_version_and_round_trip(
    pg_pool: asyncpg.Pool,
) -> None:
    store = PostgresEventStore(pg_pool)
    stream = f"conversation-{uuid.uuid4().hex}"
    reply = BotReplied(seq=0, text="hi", command_id="c", speak=True, received_at=2.5)
    wrote = CustomerWrote(seq=0, text="hello", detail={"a": [1, "two"]})
    await store.append(stream, [NewEvent(wrote, metadata={"correlation_id": "k"}), NewEvent(reply)])
    first, second = await store.read_stream(stream)
    assert (first.event, second.event) == (wrote, reply)
    assert first.metadata == {"correlation_id": "k", SCHEMA_KEY: 1}
    assert second.metadata[SCHEMA_KEY] == BotReplied.schema == 2
    async with pg_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT type, data FROM events WHERE stream_name = $1 AND stream_version = 1", stream
        )
    # Stored under today's type name, its fields as plain JSON: operators' queries still work.
    assert row["type"] == "BotReplied"
    assert row["data"]["text"] == "hi" and row["data"]["speak"] is True


async def test_an_unknown_type_reads_as_unrecognised_and_a_misfit_row_as_undecodable(
    pg_pool: asyncpg.Pool,
) -> None:
    store = PostgresEventStore(pg_pool)
    stream = f"other-{uuid.uuid4().hex}"
    await _insert(pg_pool, stream, "SomethingNewer", {"x": 1})
    [recorded] = await store.read_stream(stream)
    assert recorded.event == Unrecognised(type="SomethingNewer", data={"x": 1})
    bad = f"inbox-{uuid.uuid4().hex}"
    await _insert(pg_pool, bad, "MessageReceived", {"wamid": "w"})  # required fields missing
    before = metrics.eventstore_undecodable.labels("MessageReceived")._value.get()
    [misfit] = await store.read_stream(bad)
    # Readers see it for what it is, and skip or give it up, rather than fail for ever.
    assert isinstance(misfit.event, Undecodable) and misfit.type == "MessageReceived"
    assert "missing required field" in misfit.event.error and misfit.event.data == {"wamid": "w"}
    assert metrics.eventstore_undecodable.labels("MessageReceived")._value.get() == before + 1
    with pytest.raises(UndecodableEvent, match="MessageReceived"):
        store.mapper.decode(bad, "MessageReceived", {"wamid": "w"}, {})


def test_upcasters_run_in_order_and_a_missing_step_is_refused() -> None:
    class Thing(MediaRequested, kw_only=True):
        pass

    Thing.schema = 3  # type: ignore[misc]
    steps = [
        Upcaster("Thing", 1, lambda d: {**d, "kind": "audio"}),
        Upcaster("Thing", 2, lambda d: {**d, "described": d["kind"] + "!"}),
    ]
    mapper = Mapper([Thing], steps)
    data = {"seq": 1, "wamid": "w", "phone_number_id": "p", "customer": "c"}
    event = mapper.to_event("s-1", "Thing", data, {})
    assert isinstance(event, Thing) and (event.kind, event.described) == ("audio", "audio!")
    assert mapper.to_event("s-1", "Thing", {**data, "kind": "x"}, {SCHEMA_KEY: 3}).kind == "x"
    with pytest.raises(UndecodableEvent, match="no upcaster"):
        Mapper([Thing], steps[1:]).decode("s-1", "Thing", data, {})


def test_every_event_type_is_registered_once_with_a_description() -> None:
    names = [cls.__name__ for cls in events.ALL]
    assert len(names) == len(set(names))
    assert all((cls.__doc__ or "").strip() for cls in events.ALL)
    assert MessageReceived in events.ALL
