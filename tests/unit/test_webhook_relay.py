"""The relay's pure parts: signatures, the SSRF policy, the retry decisions, the catalogue,
fan-out and endpoint commands. Signatures are checked with the reference `standardwebhooks`
library, as a CRM would check them."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhook_relay import catalogue, domain
from services.webhook_relay.fanout import conversations_of, deliveries_for
from services.webhook_relay.schedule import (
    Outcome,
    Policy,
    decide,
    parse_duration,
    parse_retry_after,
    parse_schedule,
)
from services.webhook_relay.signing import (
    InvalidSecret,
    generate_secret,
    secret_key,
    sign,
    signature_header,
)
from services.webhook_relay.ssrf import (
    SafeResolver,
    UnsafeAddress,
    UnsafeUrl,
    UrlPolicy,
    check_registration,
)
from services.webhook_relay.store import delivery_id_for
from shared.events.conversation import BotReplied, CustomerWrote, FlowCompleted, TurnFailed
from shared.events.dedup import MessageReceived
from shared.events.media import MediaStored, MediaTranscribed
from shared.events.outbound import (
    LifecycleChanged,
    MessageSent,
    SendAttemptFailed,
    SendFailed,
    SendStarted,
)
from shared.events.webhook_relay import EndpointCreated
from shared.eventstore import Event, NewEvent, Position, RecordedEvent, Undecodable
from shared.eventstore.memory import InMemoryEventStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# --- signatures ------------------------------------------------------------------------------

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_specs_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_reference_library_produces_the_same_signature() -> None:
    reference = Webhook(SPEC_SECRET).sign(
        SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY.decode()
    )
    assert reference == SPEC_SIGNATURE


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_a_generated_secret_signs_what_the_reference_library_verifies() -> None:
    secret = generate_secret()
    body = json.dumps({"type": "message.received", "data": {"x": "é"}}).encode()
    ts = int(datetime.now(UTC).timestamp())
    headers = _headers("msg_1", ts, signature_header([secret], "msg_1", ts, body))
    assert Webhook(secret).verify(body, headers)["type"] == "message.received"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)  # the body was changed


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    body, ts = b'{"a":1}', int(datetime.now(UTC).timestamp())
    header = signature_header([new, old], "msg_2", ts, body)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, _headers("msg_2", ts, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, _headers("msg_2", ts, header))


@pytest.mark.parametrize(
    "bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="]
)
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_key(bad)


# --- SSRF ------------------------------------------------------------------------------------

STRICT = UrlPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",  # http is refused unless allowed
        "ftp://93.184.216.34/hook",
        "https://127.0.0.1/hook",
        "https://127.8.9.10:8443/hook",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata: link-local
        "https://100.64.0.1/hook",  # shared address space
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fc00::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
        "https://[::ffff:10.0.0.1]/hook",
        "https://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
        "https://[64:ff9b::a00:1]/hook",  # NAT64 around 10.0.0.1
        "https://localhost/hook",
        "https://api.localhost/hook",
        "https:///nohost",
    ],
)
def test_unsafe_urls_are_refused_without_any_lookup(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        STRICT.check_url(url)


def test_public_https_urls_pass_the_form_check() -> None:
    def host_port(url: str) -> tuple[str, int]:
        target = STRICT.check_url(url)
        return target.host, target.port

    assert host_port("https://93.184.216.34/hook") == ("93.184.216.34", 443)
    assert host_port("https://[2606:4700::1111]:8443/x") == ("2606:4700::1111", 8443)
    assert host_port("https://crm.example.com/x") == ("crm.example.com", 443)


def test_configuration_can_allow_http_and_chosen_networks() -> None:
    policy = UrlPolicy.from_settings(True, "127.0.0.0/8, ::1/128")
    target = policy.check_url("http://127.0.0.1:9000/hook")
    assert (target.host, target.port) == ("127.0.0.1", 9000)
    policy.check_url("http://[::1]:9000/hook")
    policy.check_url("http://localhost:9000/hook")
    with pytest.raises(UnsafeUrl):
        policy.check_url("http://10.0.0.1/hook")  # only what was allowed
    with pytest.raises(UnsafeUrl):
        policy.check_url("http://[fe80::1]/hook")


class FakeDNS(AbstractResolver):
    """Answers from a table instead of the network (tests never make a real lookup)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such name {host}")
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.table[host]
        ]

    async def close(self) -> None:
        pass


def test_a_name_resolving_to_a_private_address_is_refused_at_registration() -> None:
    dns = FakeDNS(
        {
            "crm.example.com": ["93.184.216.34"],
            "intranet.example.com": ["10.0.0.5"],
            "mixed.example.com": ["93.184.216.34", "127.0.0.1"],  # one bad answer is enough
            "mapped.example.com": ["::ffff:192.168.0.1"],
        }
    )

    async def register(url: str) -> None:
        await check_registration(STRICT, url, dns)

    asyncio.run(register("https://crm.example.com/hook"))
    for name in ("intranet", "mixed", "mapped", "unknown"):
        with pytest.raises(UnsafeUrl):
            asyncio.run(register(f"https://{name}.example.com/hook"))


def test_the_delivery_resolver_refuses_a_name_rebound_to_an_internal_address() -> None:
    dns = FakeDNS({"crm.example.com": ["93.184.216.34"]})
    resolver = SafeResolver(STRICT, dns)
    [ok] = asyncio.run(resolver.resolve("crm.example.com", 443))
    assert ok["host"] == "93.184.216.34"  # the address aiohttp connects to is the checked one
    dns.table["crm.example.com"] = ["169.254.169.254"]  # re-pointed after registration
    with pytest.raises(UnsafeAddress):
        asyncio.run(resolver.resolve("crm.example.com", 443))


def test_explicitly_allowed_network_lets_a_private_address_through() -> None:
    policy = UrlPolicy(allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    policy.check_address("10.1.2.3")
    policy.check_address("::ffff:10.1.2.3")
    with pytest.raises(UnsafeUrl):
        policy.check_address("192.168.1.1")


# --- retries ---------------------------------------------------------------------------------


def test_durations_and_schedules_parse() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("5m") == 300
    assert parse_duration("2h") == 7200
    assert parse_duration("7") == 7
    assert parse_schedule("5s,5m,30m,2h,5h,10h,14h,20h,24h") == (
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        50400,
        72000,
        86400,
    )
    with pytest.raises(ValueError):
        parse_schedule("5 minutes")


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", NOW) == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


SCHEDULE = Policy(parse_schedule("5s,5m,30m"), jitter=0.2)


def test_failures_walk_the_schedule_with_jitter_then_dead_letter() -> None:
    rng = random.Random(7)
    failures = 0
    waits = []
    for _ in range(3):
        d = decide(Outcome(500, "HTTP 500"), failures, 10, SCHEDULE, 0, rng)
        assert d.state == "pending"
        failures = d.failures
        waits.append(d.retry_in)
    assert failures == 3
    for wait, step in zip(waits, (5, 300, 1800), strict=True):
        assert step * 0.8 <= wait <= step * 1.2
    assert decide(Outcome(None, "timeout"), failures, 99, SCHEDULE, 0, rng).state == "dead"


def test_jitter_spreads_retries() -> None:
    rng = random.Random(1)
    waits = {decide(Outcome(503), 0, 0, SCHEDULE, 0, rng).retry_in for _ in range(20)}
    assert len(waits) > 10


def test_success_gone_and_redirects() -> None:
    rng = random.Random(0)
    assert decide(Outcome(204), 2, 50, SCHEDULE, 0, rng).state == "succeeded"
    gone = decide(Outcome(410), 0, 0, SCHEDULE, 0, rng)
    assert gone.disable_endpoint and gone.state == "pending" and gone.failures == 0
    redirect = decide(Outcome(301), 0, 0, SCHEDULE, 0, rng)
    assert redirect.state == "pending" and redirect.failures == 1  # 3xx is a failure


def test_throttling_pauses_the_endpoint_without_spending_the_schedule() -> None:
    rng = random.Random(0)
    told = decide(Outcome(429, retry_after=42), 1, 10, SCHEDULE, 1, rng)
    assert (told.state, told.failures, told.retry_in, told.pause_endpoint) == (
        "pending",
        1,
        42,
        42,
    )
    first = decide(Outcome(502), 0, 0, SCHEDULE, 1, rng).pause_endpoint
    third = decide(Outcome(504), 0, 0, SCHEDULE, 3, rng).pause_endpoint
    assert third == 4 * first  # doubles while the throttling lasts
    capped = decide(Outcome(429, retry_after=10**9), 0, 0, SCHEDULE, 1, rng)
    assert capped.pause_endpoint == SCHEDULE.max_pause
    # Still throttled once the whole schedule's time has passed: given up like any other.
    assert decide(Outcome(429), 0, SCHEDULE.give_up_after, SCHEDULE, 1, rng).state == "dead"


def test_retry_after_on_a_failure_can_only_lengthen_the_wait() -> None:
    rng = random.Random(0)
    d = decide(Outcome(503, retry_after=120), 0, 0, SCHEDULE, 0, rng)
    assert d.retry_in == 120


# --- catalogue and fan-out -------------------------------------------------------------------


def recorded(event: Event, stream: str, version: int = 0, position: int = 1) -> RecordedEvent:
    return RecordedEvent(
        id=uuid.uuid4(),
        stream=stream,
        version=version,
        position=Position(position, position),
        event=event,
        metadata={},
        recorded_at=NOW,
    )


def received(wamid: str, **fields: Any) -> MessageReceived:
    base: dict[str, Any] = {"phone_number_id": "1", "customer": "2", "type": "text", "message": {}}
    return MessageReceived(conversation_id="", wamid=wamid, **{**base, **fields})


def test_each_internal_event_maps_to_its_public_type_with_a_conversation_key() -> None:
    cid = "100.39333"
    cases: dict[str, tuple[str, Event]] = {
        "MessageReceived": (
            f"inbox-{cid}",
            MessageReceived(
                conversation_id="",
                phone_number_id="100",
                customer="39333",
                wamid="w1",
                type="text",
                message={},
            ),
        ),
        "BotReplied": (f"conversation-{cid}", BotReplied(seq=1, text="hi", command_id="c")),
        "MessageSent": (
            "message-w2",
            MessageSent(
                wamid="w2", command_id="c", conversation_id=cid, phone_number_id="100", seq=1
            ),
        ),
        "LifecycleChanged": (
            "message-w2",
            LifecycleChanged(wamid="w2", status="read", conversation_id=cid),
        ),
        "SendFailed": ("outbox-c9", SendFailed(code=131047, status=400, conversation_id=cid)),
        "TurnFailed": (f"conversation-{cid}", TurnFailed(seq=2, error="boom")),
        "FlowCompleted": (
            f"conversation-{cid}",
            FlowCompleted(seq=3, name="support_request", flow="support", slots={"order": "A-1"}),
        ),
        "MediaStored": (
            "media-w1",
            MediaStored(
                wamid="w1",
                conversation_id=cid,
                kind="image",
                seq=0,
                sha256="ab",
                size=1,
                store_key="k",
            ),
        ),
    }
    seen = {}
    for type_, (stream, event) in cases.items():
        public = catalogue.to_public(recorded(event, stream))
        assert public is not None, type_
        assert public.order_key == cid
        assert public.data["conversation_id"] == cid
        seen[type_] = public.type
    assert seen["MessageReceived"] == "message.received"
    assert seen["LifecycleChanged"] == "message.status"
    assert seen["SendFailed"] == "message.failed"
    assert seen["FlowCompleted"] == "flow.completed"
    flow = catalogue.to_public(recorded(cases["FlowCompleted"][1], f"conversation-{cid}"))
    assert flow is not None and flow.data == {
        "conversation_id": cid,
        "sequence": 3,
        "phone_number_id": "100",
        "customer": "39333",
        "name": "support_request",
        "flow": "support",
        "slots": {"order": "A-1"},
    }
    failed = catalogue.to_public(recorded(cases["SendFailed"][1], "outbox-c9"))
    assert failed is not None and failed.data["command_id"] == "c9"


def test_internal_bookkeeping_is_not_published() -> None:
    internal: list[Event] = [
        SendStarted(attempt=1),
        SendAttemptFailed(attempt=1),
        CustomerWrote(seq=0, text="hi"),
        EndpointCreated(endpoint_id="ep", url="https://crm"),
    ]
    for event in internal:
        assert catalogue.to_public(recorded(event, "x-1")) is None


def test_the_body_is_the_versioned_envelope_and_does_not_leak_internal_fields() -> None:
    event = recorded(
        received("w", delivery_id="internal", message={"a": 1}), "inbox-1.2", version=4
    )
    public = catalogue.to_public(event)
    assert public is not None
    body = json.loads(public.body())
    assert set(body) == {"type", "id", "time", "schema_version", "data"}
    assert body["schema_version"] == catalogue.SCHEMA_VERSION
    assert body["id"] == str(event.id)
    assert body["time"] == "2026-03-01T12:00:00.000Z"
    assert body["data"]["sequence"] == 4
    assert "delivery_id" not in body["data"]


def test_filters_with_wildcards() -> None:
    assert catalogue.matches([], "message.sent")
    assert catalogue.matches(["message.*"], "message.status")
    assert not catalogue.matches(["message.*"], "conversation.reply")
    assert catalogue.matches(["*"], "account.change")
    assert catalogue.valid_filter("media.*") and not catalogue.valid_filter("nope.*")
    with pytest.raises(domain.InvalidEndpoint):
        domain.check_event_types(["message.received", "message.deleted"])


def endpoint(
    filters: tuple[str, ...] = (), enabled: bool = True, created: datetime | None = None
) -> domain.Endpoint:
    ep, _ = domain.create(
        domain.new_endpoint_id(), "https://crm", "", filters, generate_secret(), created or NOW
    )
    return ep if enabled else domain.disable(ep, "off", "admin", NOW)[0]


def test_fan_out_gives_each_interested_endpoint_one_delivery_with_a_stable_id() -> None:
    everything, replies, off = (
        endpoint(),
        endpoint(("conversation.reply",)),
        endpoint(enabled=False),
    )
    later = endpoint(created=NOW + timedelta(seconds=1))
    events = [
        recorded(received("w"), "inbox-1.2"),
        recorded(BotReplied(seq=0, text="t", command_id="c"), "conversation-1.2", position=2),
        recorded(SendStarted(attempt=1), "outbox-c", position=3),
    ]
    rows = deliveries_for(events, [everything, replies, off, later])
    assert sorted((r.endpoint_id, r.event_type) for r in rows) == sorted(
        [
            (everything.endpoint_id, "message.received"),
            (everything.endpoint_id, "conversation.reply"),
            (replies.endpoint_id, "conversation.reply"),
        ]
    )
    again = deliveries_for(events, [everything, replies, off, later])
    assert [r.delivery_id for r in again] == [r.delivery_id for r in rows]
    assert rows[0].delivery_id == delivery_id_for(everything.endpoint_id, str(events[0].id))
    assert len({r.delivery_id for r in rows}) == len(rows)
    # Replay since a time ignores the creation date.
    assert len(deliveries_for(events, [later], only_after_creation=False)) == 2


# --- endpoint commands -----------------------------------------------------------------------


def test_rotation_keeps_the_old_secret_signing_for_the_grace_period_only() -> None:
    ep = endpoint()
    [old] = ep.signing_secrets(NOW)
    rotated, [event] = domain.rotate_secret(ep, generate_secret(), timedelta(hours=1), NOW)
    signing = rotated.signing_secrets(NOW + timedelta(minutes=59))
    assert len(signing) == 2 and signing[1] == old
    assert rotated.signing_secrets(NOW + timedelta(minutes=61)) == signing[:1]
    stored = msgspec.json.encode(event.event).decode()
    assert old not in stored and signing[0] not in stored


def test_endpoint_events_and_listings_never_carry_secrets() -> None:
    ep = endpoint()
    [secret] = ep.signing_secrets(NOW)
    _, events = domain.create("ep_x", "https://crm", "", (), secret, NOW)
    assert secret not in msgspec.json.encode([e.event for e in events]).decode()
    assert secret not in json.dumps(ep.public(), default=str)
    assert secret not in repr(ep)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@crm.example.com/hook",
        "https://token@crm.example.com/hook",
        "https://crm.example.com/a\u0000b",
        "https://127\u30020\u30020\u30021/hook",
    ],
)
def test_no_endpoint_event_can_carry_credentials_or_an_ambiguous_url(url: str) -> None:
    """Checked in the domain itself, whoever calls it: an append-only log keeps what it
    is given for good."""
    ep = endpoint()
    with pytest.raises(domain.InvalidEndpoint) as err:
        domain.create("ep_x", url, "", (), generate_secret(), NOW)
    assert err.value.field == "url"
    with pytest.raises(domain.InvalidEndpoint):
        domain.update(ep, NOW, url=url)


@pytest.mark.parametrize(
    "text", ["a\u0000b", "two\nlines", "tab\there", "\x1b[31mred", "x\u2028y", "x\u202ey", "\ud800"]
)
def test_text_fields_refuse_control_characters(text: str) -> None:
    ep = endpoint()
    with pytest.raises(domain.InvalidEndpoint) as err:
        domain.create("ep_x", "https://crm.example.com/", text, (), generate_secret(), NOW)
    assert err.value.field == "description"
    with pytest.raises(domain.InvalidEndpoint):
        domain.update(ep, NOW, description=text)
    with pytest.raises(domain.InvalidEndpoint) as err:
        domain.disable(ep, text, "admin", NOW)
    assert err.value.field == "reason"
    # Ordinary text passes, emoji and other scripts included.
    domain.check_description(
        "CRM \u2013 caf\u00e9, \u0645\u0631\u062d\u0628\u0627 \U0001f44b\u200d"
    )


def test_a_listing_hides_credentials_an_older_endpoint_may_still_have() -> None:
    legacy = replace(endpoint(), url="https://user:pass@crm.example.com/hook?a=b@c")
    assert legacy.public()["url"] == "https://***@crm.example.com/hook?a=b@c"
    assert endpoint().public()["url"] == endpoint().url


def test_disable_enable_are_idempotent() -> None:
    ep = endpoint()
    off, events = domain.disable(ep, "410", "relay", NOW)
    assert not off.enabled and len(events) == 1
    assert domain.disable(off, "again", "admin", NOW)[1] == []
    on, events = domain.enable(off, NOW)
    assert on.enabled and on.disabled_reason is None and len(events) == 1


def test_an_event_without_its_conversation_gets_it_from_its_stream() -> None:
    """MediaTranscribed does not name its conversation; MediaStored, earlier in the same
    stream, does. Both must reach a CRM in the conversation's lane, with its id."""
    store = InMemoryEventStore()
    cid = "100.3912345"

    async def scenario() -> list[Any]:
        await store.append(
            "media-w1",
            [
                NewEvent(
                    MediaStored(
                        wamid="w1",
                        conversation_id=cid,
                        kind="audio",
                        seq=0,
                        sha256="ab",
                        size=1,
                        store_key="k",
                    )
                )
            ],
        )
        await store.append(
            "media-w1", [NewEvent(MediaTranscribed(wamid="w1", text="hi", available=True))]
        )
        events = await store.read_all()
        found = await conversations_of(events, store)
        return [
            found,
            deliveries_for(
                events, [endpoint(created=datetime.min.replace(tzinfo=UTC))], conversations=found
            ),
        ]

    found, rows = asyncio.run(scenario())
    assert found == {"media-w1": cid}
    assert [(r.event_type, r.order_key) for r in rows] == [
        ("media.stored", cid),
        ("media.transcribed", cid),
    ]
    assert json.loads(rows[1].body)["data"]["conversation_id"] == cid


def test_a_row_that_does_not_read_back_is_skipped_not_a_stall() -> None:
    broken = Undecodable(type="MessageReceived", data={"wamid": "w"}, error="missing fields")
    event = recorded(broken, "inbox-1.2")
    assert not catalogue.needs_conversation(event)
    assert catalogue.to_public(event) is None
    assert deliveries_for([event], [endpoint()]) == []
