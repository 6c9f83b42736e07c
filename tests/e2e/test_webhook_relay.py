"""The webhook relay as a CRM sees it, with the real service processes: customer messages go
in at ingress, signed webhooks come out at CRMs that are real HTTP servers in the test.

The stack's relay runs with a short retry schedule (200 ms .. 3.2 s, dead after about 6 s), a
3 s timeout and loopback allowed over http (tests/e2e/harness.py RELAY_ENV).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhook_relay.client import AdminClient, AdminError
from services.webhook_relay.signing import generate_secret
from shared.payloads import status_payload, text_message
from shared.stack import ROOT
from tests.e2e.harness import ADMIN_TOKEN, Running, new_customer
from tests.e2e.test_crash import in_flight
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import Fault, RecordedRequest, wait_for
from tests.support.relay_admin import Probe, send

AUTH_HEADER = (b"Authorization", b"Bearer " + ADMIN_TOKEN.encode())

PHONE_NUMBER_ID = "100000000000001"  # text_message's default business number
OUTCOME_TIMEOUT = 60


def cid_of(bot: Running, customer: str) -> str:
    return bot.conversation_id(PHONE_NUMBER_ID, customer)


def of_conversation(cid: str) -> Callable[[RecordedRequest], bool]:
    def pred(rec: RecordedRequest) -> bool:
        try:
            return json.loads(rec.body)["data"].get("conversation_id") == cid
        except (ValueError, KeyError, TypeError):
            return False

    return pred


def verify(secret: str, rec: RecordedRequest) -> dict[str, Any]:
    return dict(Webhook(secret).verify(rec.body, rec.headers))


def serve_crm(bot: Running) -> Iterator[FakeCRM]:
    """A CRM for one test; its endpoints are deleted afterwards so later tests' events do
    not queue up for a server that is gone."""
    server = FakeCRM().start()
    try:
        yield server
    finally:
        server.stop()
        if bot.stack.pid("webhook_relay") is None:  # a test that killed it and failed
            bot.restart("webhook_relay")
        for endpoint in bot.relay_admin.endpoints():
            if endpoint["url"] == server.endpoint_url:
                bot.relay_admin.delete_endpoint(endpoint["id"])


@pytest.fixture
def crm(bot: Running) -> Iterator[FakeCRM]:
    yield from serve_crm(bot)


@pytest.fixture
def witness(bot: Running) -> Iterator[FakeCRM]:
    """A second CRM, healthy throughout."""
    yield from serve_crm(bot)


def deliveries_of(admin: AdminClient, endpoint_id: str, cid: str) -> list[dict[str, Any]]:
    return [d for d in admin.deliveries(endpoint_id) if d["conversation"] == cid]


# --- what a CRM receives ---------------------------------------------------------------------


def test_a_crm_gets_every_event_of_a_conversation_signed_and_in_order(
    bot: Running, crm: FakeCRM
) -> None:
    endpoint = bot.relay_admin.create_endpoint(crm.endpoint_url, description="CRM")
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    customer = new_customer()
    cid = cid_of(bot, customer)
    status, _ = bot.post(text_message("hello crm", customer=customer))
    assert status == 200
    expected = ["message.received", "conversation.reply", "message.sent"]
    wait_for(lambda: [e["type"] for e in crm.events(cid)] == expected, timeout=OUTCOME_TIMEOUT)
    sent = crm.events(cid)[2]
    bot.post(status_payload(sent["data"]["wamid"], "delivered", customer))
    wait_for(lambda: len(crm.events(cid)) == 4, timeout=OUTCOME_TIMEOUT)

    received, reply, sent, delivered = crm.events(cid)
    assert received["data"]["message"]["text"]["body"] == "hello crm"
    assert received["data"]["customer"] == customer and received["schema_version"] == 1
    assert reply["data"]["text"] == "echo: hello crm"
    assert reply["data"]["in_reply_to"] == received["data"]["wamid"]
    assert delivered["type"] == "message.status"
    assert delivered["data"]["status"] == "delivered"
    assert delivered["data"]["wamid"] == sent["data"]["wamid"]
    requests = [r for r in crm.webhooks() if of_conversation(cid)(r)]
    for rec in requests:
        assert rec.headers["content-type"] == "application/json"
        assert verify(secret, rec)["data"]["conversation_id"] == cid
        with pytest.raises(WebhookVerificationError):
            verify(generate_secret(), rec)
    ids = [r.headers["webhook-id"] for r in requests]
    assert len(set(ids)) == 4
    assert {d["id"] for d in deliveries_of(bot.relay_admin, endpoint["id"], cid)} == set(ids)


def test_event_type_filter_and_its_update(bot: Running, crm: FakeCRM) -> None:
    admin = bot.relay_admin
    endpoint = admin.create_endpoint(crm.endpoint_url, ["conversation.reply"])
    first, second = new_customer(), new_customer()
    bot.post(text_message("one", customer=first))
    wait_for(lambda: len(crm.events(cid_of(bot, first))) == 1, timeout=OUTCOME_TIMEOUT)
    wait_for(lambda: len(bot.graph.texts_to(first)) == 1, timeout=OUTCOME_TIMEOUT)
    assert [e["type"] for e in crm.events(cid_of(bot, first))] == ["conversation.reply"]

    admin.update_endpoint(endpoint["id"], event_types=["message.*"])
    bot.post(text_message("two", customer=second))
    wait_for(lambda: len(crm.events(cid_of(bot, second))) == 2, timeout=OUTCOME_TIMEOUT)
    assert [e["type"] for e in crm.events(cid_of(bot, second))] == [
        "message.received",
        "message.sent",
    ]


# --- never lost --------------------------------------------------------------------------------


def test_no_event_lost_across_a_crm_outage_and_a_relay_sigkill(bot: Running, crm: FakeCRM) -> None:
    admin = bot.relay_admin
    endpoint = admin.create_endpoint(crm.endpoint_url, ["message.received", "conversation.reply"])
    customers = [new_customer() for _ in range(4)]
    cids = [cid_of(bot, c) for c in customers]
    crm.go_down()
    for round_ in range(3):
        for customer in customers:
            status, _ = bot.post(text_message(f"m{round_}", customer=customer))
            assert status == 200
        time.sleep(0.3)
    # The relay has tried and failed while the CRM was down.
    wait_for(
        lambda: any(
            "connection failed" in (d["last_error"] or "")
            for d in admin.deliveries(endpoint["id"], "pending")
        ),
        timeout=OUTCOME_TIMEOUT,
        message="failed attempts while the CRM is down",
    )
    wait_for(lambda: all(len(bot.graph.texts_to(c)) == 3 for c in customers), timeout=60)

    crm.latency = 1.0  # back, but slow: deliveries are in flight when the relay is killed
    crm.come_back()
    mine = lambda rec: any(of_conversation(c)(rec) for c in cids)  # noqa: E731
    wait_for(lambda: in_flight(crm, mine, 0.8), timeout=OUTCOME_TIMEOUT, interval=0.01)
    bot.stack.kill("webhook_relay")
    crm.latency = 0.0
    bot.restart("webhook_relay")

    expected = 3 * 2 * len(customers)  # three messages: received + reply, per customer

    def all_succeeded() -> bool:
        rows = [d for d in admin.deliveries(endpoint["id"]) if d["conversation"] in cids]
        return len(rows) == expected and all(d["state"] == "succeeded" for d in rows)

    wait_for(all_succeeded, timeout=OUTCOME_TIMEOUT, interval=0.2, message="all delivered")
    rows = [d for d in admin.deliveries(endpoint["id"]) if d["conversation"] in cids]
    accepted_ids = {r.headers["webhook-id"] for r in crm.accepted() if mine(r)}
    assert {d["id"] for d in rows} <= accepted_ids
    for customer, cid in zip(customers, cids, strict=True):
        # First arrival of each event, in arrival order: the conversation's order.
        seen: dict[str, dict[str, Any]] = {}
        for rec in crm.accepted():
            if of_conversation(cid)(rec):
                seen.setdefault(rec.headers["webhook-id"], json.loads(rec.body))
        texts = [
            e["data"]["message"]["text"]["body"]
            if e["type"] == "message.received"
            else e["data"]["text"]
            for e in seen.values()
        ]
        assert texts == ["m0", "echo: m0", "m1", "echo: m1", "m2", "echo: m2"], customer
    # The delivery cut off by the kill was sent again: at least once, never zero times.
    counts: dict[str, int] = {}
    for rec in crm.accepted():
        if mine(rec):
            counts[rec.headers["webhook-id"]] = counts.get(rec.headers["webhook-id"], 0) + 1
    assert max(counts.values()) >= 2
    assert admin.dead_letters(endpoint["id"]) == []


def test_retries_carry_the_same_webhook_id(bot: Running, crm: FakeCRM) -> None:
    endpoint = bot.relay_admin.create_endpoint(crm.endpoint_url, ["message.received"])
    customer = new_customer()
    mine = of_conversation(cid_of(bot, customer))
    crm.inject(
        Fault(status=500, match=mine),
        Fault(status=503, json={"error": "maintenance"}, match=mine),
        Fault(status=None, delay=5, match=mine),  # hangs past the relay's 3 s timeout
    )
    bot.post(text_message("retry me", customer=customer))

    def done() -> bool:
        rows = deliveries_of(bot.relay_admin, endpoint["id"], cid_of(bot, customer))
        return len(rows) == 1 and rows[0]["state"] == "succeeded"

    wait_for(done, timeout=OUTCOME_TIMEOUT, interval=0.2)
    requests = [r for r in crm.webhooks() if mine(r)]
    assert len(requests) == 4
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for rec in requests:
        verify(endpoint["secret"], rec)
    [row] = deliveries_of(bot.relay_admin, endpoint["id"], cid_of(bot, customer))
    assert (row["attempts"], row["failures"], row["last_status"]) == (4, 3, 200)


# --- 410, throttling, dead letters, replay ----------------------------------------------------


def test_410_disables_the_endpoint_until_it_is_enabled_again(
    bot: Running, crm: FakeCRM, witness: FakeCRM
) -> None:
    admin = bot.relay_admin

    def disabled_gauge() -> float:
        return bot.metric("webhook_relay", "webhook_relay_endpoints", state="disabled")

    gone = admin.create_endpoint(crm.endpoint_url, ["message.received"])
    admin.create_endpoint(witness.endpoint_url, ["message.received"])
    wait_for(
        lambda: bot.metric("webhook_relay", "webhook_relay_endpoints", state="enabled") > 0,
        timeout=OUTCOME_TIMEOUT,
    )
    disabled_before = disabled_gauge()
    customer = new_customer()
    cid = cid_of(bot, customer)
    crm.fail_always(Fault(status=410))
    bot.post(text_message("first", customer=customer))
    wait_for(lambda: not admin.endpoint(gone["id"])["enabled"], timeout=OUTCOME_TIMEOUT)
    after = admin.endpoint(gone["id"])
    assert "410" in after["disabled_reason"]
    # What the CrmEndpointDisabled alert watches.
    wait_for(lambda: disabled_gauge() == disabled_before + 1, timeout=OUTCOME_TIMEOUT)
    history = bot.events(f"endpoint-{gone['id']}")
    assert [t for t, _ in history] == ["EndpointCreated", "EndpointDisabled"]
    assert (
        bot.sql(
            "SELECT metadata->>'actor' AS actor FROM events WHERE stream_name = $1"
            " AND type = 'EndpointDisabled'",
            f"endpoint-{gone['id']}",
        )[0]["actor"]
        == "relay"
    )

    bot.post(text_message("second", customer=customer))
    wait_for(lambda: len(witness.events(cid)) == 2, timeout=OUTCOME_TIMEOUT)
    # The relay fans an event out to every endpoint in one transaction: the witness has the
    # second message, so the relay has decided for the disabled endpoint too, and queued it
    # nothing (a delivery it does not queue is never sent).
    assert len(deliveries_of(admin, gone["id"], cid)) == 1
    assert len([r for r in crm.webhooks() if of_conversation(cid)(r)]) == 1  # nothing more

    crm.clear_faults()
    admin.enable(gone["id"])
    wait_for(lambda: disabled_gauge() == disabled_before, timeout=OUTCOME_TIMEOUT)
    wait_for(lambda: len(crm.events(cid)) == 1, timeout=OUTCOME_TIMEOUT)
    [event] = crm.events(cid)
    assert event["data"]["message"]["text"]["body"] == "first"  # waited, then went first
    # The second message was recorded while the endpoint was off: replay since recovers it.
    # The first one is sent again too (same webhook-id), and still goes first.
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert admin.replay_since(gone["id"], since) >= 2

    def bodies() -> list[str]:
        return [e["data"]["message"]["text"]["body"] for e in crm.events(cid)]

    wait_for(lambda: len(bodies()) == 3, timeout=OUTCOME_TIMEOUT)
    assert bodies() == ["first", "first", "second"]
    ids = [r.headers["webhook-id"] for r in crm.accepted() if of_conversation(cid)(r)]
    assert ids[0] == ids[1] != ids[2]


def test_429_and_502_slow_the_endpoint_down(bot: Running, crm: FakeCRM) -> None:
    endpoint = bot.relay_admin.create_endpoint(crm.endpoint_url, ["message.received"])
    customer = new_customer()
    mine = of_conversation(cid_of(bot, customer))
    crm.inject(
        Fault(status=429, headers={"Retry-After": "2"}, match=mine),
        Fault(status=502, match=mine),
    )
    bot.post(text_message("slow down", customer=customer))
    wait_for(lambda: len(crm.events(cid_of(bot, customer))) == 1, timeout=OUTCOME_TIMEOUT)
    first, second, third = [r for r in crm.webhooks() if mine(r)]
    assert second.received_at - first.received_at >= 1.9  # Retry-After honoured
    assert third.received_at > second.received_at
    [row] = deliveries_of(bot.relay_admin, endpoint["id"], cid_of(bot, customer))
    # Throttling slowed it down without spending the retry schedule.
    assert (row["state"], row["attempts"], row["failures"]) == ("succeeded", 3, 0)


def test_dead_letters_are_listed_and_replayed(bot: Running, crm: FakeCRM) -> None:
    admin = bot.relay_admin
    endpoint = admin.create_endpoint(crm.endpoint_url, ["message.received"])
    customers = [new_customer() for _ in range(3)]
    cids = {cid_of(bot, c) for c in customers}
    mine = lambda rec: any(of_conversation(c)(rec) for c in cids)  # noqa: E731
    crm.fail_always(Fault(status=500, json={"error": "crm bug"}, match=mine))
    started = datetime.now(UTC) - timedelta(seconds=5)
    for customer in customers:
        bot.post(text_message("doomed", customer=customer))

    def dead() -> list[dict[str, Any]]:
        return [d for d in admin.dead_letters(endpoint["id"]) if d["conversation"] in cids]

    wait_for(lambda: len(dead()) == 3, timeout=OUTCOME_TIMEOUT, interval=0.5)
    one, *rest = dead()
    assert one["attempts"] == 6 and one["failures"] == 6 and one["last_status"] == 500
    assert "crm bug" in one["last_error"]
    assert not any(mine(r) for r in crm.accepted())

    crm.clear_faults()
    replayed = admin.replay_delivery(one["id"])
    assert replayed["id"] == one["id"] and replayed["state"] == "pending"
    wait_for(lambda: admin.delivery(one["id"])["state"] == "succeeded", timeout=OUTCOME_TIMEOUT)
    assert [r.headers["webhook-id"] for r in crm.accepted() if mine(r)] == [one["id"]]
    assert len(dead()) == 2

    assert admin.replay_dead(endpoint["id"]) == 2
    wait_for(lambda: len(crm.accepted()) == 3, timeout=OUTCOME_TIMEOUT)
    assert {r.headers["webhook-id"] for r in crm.accepted()} == {one["id"]} | {
        d["id"] for d in rest
    }
    assert dead() == []

    # Every event since a time, read from the event store: sent again, same webhook-ids.
    count = admin.replay_since(endpoint["id"], started.isoformat())
    assert count >= 3
    wait_for(
        lambda: sum(1 for r in crm.accepted() if mine(r)) == 6,
        timeout=OUTCOME_TIMEOUT,
        message="each of the three sent once more",
    )
    ids = [r.headers["webhook-id"] for r in crm.accepted() if mine(r)]
    assert sorted(ids[3:]) == sorted(ids[:3])
    types = [t for t, _ in bot.events(f"endpoint-{endpoint['id']}")]
    assert types.count("DeliveriesReplayed") == 3


# --- the admin API -----------------------------------------------------------------------------


def test_the_admin_api_needs_the_token(bot: Running) -> None:
    base = bot.relay_admin.base_url
    for token in ("", "wrong-token"):
        with pytest.raises(AdminError) as err:
            AdminClient(base, token).endpoints()
        assert err.value.status == 401
    with urllib.request.urlopen(base + "/admin/openapi.json", timeout=5) as resp:
        spec = json.loads(resp.read())
    assert "/admin/endpoints/{id}/rotate-secret" in spec["paths"]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fd00::1]/hook",
        "http://100.64.0.1/hook",
        "ftp://127.0.0.1/hook",
        "http://[::10.0.0.1]/hook",  # IPv4-compatible
        "http://[::ffff:0:a00:1]/hook",  # IPv4-translated
        "http://[64:ff9b:1::a00:1]/hook",  # local-use NAT64
        "http://[fec0::1]/hook",  # site-local
        # Refused by their form, although loopback is allowed here:
        "http://user:pass@127.0.0.1/hook",  # credentials would stay in the events
        "http://127\u30020\u30020\u30021/hook",  # ideographic full stops
        "http://\uff11\uff12\uff17.0.0.1/hook",  # full-width digits
        "http://127.0.0.1\\@93.184.216.34/hook",  # backslash: parsers disagree on the host
    ],
)
def test_ssrf_attempts_are_refused_at_registration(bot: Running, url: str) -> None:
    # The stack allows loopback (the tests' CRMs live there) and nothing else that is
    # not public: each of these is refused from its address or its form alone, before any
    # connection.
    with pytest.raises(AdminError) as err:
        bot.relay_admin.create_endpoint(url)
    assert err.value.status == 422 and "refused" in err.value.message
    assert all(e["url"] != url for e in bot.relay_admin.endpoints())


def test_the_relay_answers_hostile_admin_requests_with_4xx(bot: Running) -> None:
    """The attacker's probes against the real process: each is refused with its field and
    reason, none is a 500, and nothing is registered."""
    port = bot.stack.settings.port_of("webhook_relay")
    route = ("/admin/endpoints", "post")
    json_type = (b"Content-Type", b"application/json")
    probes = [
        (
            Probe("", route, "post", "/admin/endpoints", [(b"Authorization", b"Bearer \xff")]),
            401,
            "Authorization",
        ),
        (
            Probe(
                "",
                route,
                "post",
                "/admin/endpoints",
                [AUTH_HEADER, json_type],
                b'{"url": ' + b"[" * 10000 + b"]" * 10000 + b"}",
            ),
            422,
            "body",
        ),
        (
            Probe(
                "",
                route,
                "post",
                "/admin/endpoints",
                [AUTH_HEADER, json_type],
                json.dumps({"url": "http://127.0.0.1/a\u0000"}).encode(),
            ),
            422,
            "url",
        ),
        (
            Probe(
                "",
                route,
                "post",
                "/admin/endpoints",
                [AUTH_HEADER, json_type],
                json.dumps({"url": "http://127.0.0.1/", "description": "\u0000"}).encode(),
            ),
            422,
            "description",
        ),
        (
            Probe(
                "",
                ("/admin/deliveries", "get"),
                "get",
                "/admin/deliveries?limit=501",
                [AUTH_HEADER],
            ),
            422,
            "limit",
        ),
        (
            Probe("", route, "post", "/admin/endpoints", [AUTH_HEADER, json_type], b" " * 70_000),
            413,
            "body",
        ),
    ]
    count = len(bot.relay_admin.endpoints())
    for probe, status, field in probes:
        answer = asyncio.run(send(port, probe))
        assert (answer.status, answer.json()["field"]) == (status, field), answer
    assert len(bot.relay_admin.endpoints()) == count


def test_endpoint_lifecycle_is_recorded_as_events_and_secrets_stay_out(
    bot: Running, crm: FakeCRM
) -> None:
    admin = bot.relay_admin
    endpoint = admin.create_endpoint(crm.endpoint_url, ["message.received"], "first CRM")
    old_secret = endpoint["secret"]
    assert admin.secret(endpoint["id"]) == old_secret
    with pytest.raises(AdminError) as err:
        admin.create_endpoint(crm.endpoint_url, ["message.deleted"])
    assert err.value.status == 422
    admin.update_endpoint(endpoint["id"], description="renamed")
    rotated = admin.rotate_secret(endpoint["id"])
    new_secret = rotated["secret"]
    assert new_secret != old_secret and len(rotated["secret_fingerprints"]) == 2

    # During the rotation every delivery carries both signatures.
    customer = new_customer()
    bot.post(text_message("rotating", customer=customer))
    wait_for(lambda: len(crm.events(cid_of(bot, customer))) == 1, timeout=OUTCOME_TIMEOUT)
    [rec] = [r for r in crm.webhooks() if of_conversation(cid_of(bot, customer))(r)]
    assert len(rec.headers["webhook-signature"].split(" ")) == 2
    verify(old_secret, rec)
    verify(new_secret, rec)

    admin.disable(endpoint["id"], "maintenance")
    admin.enable(endpoint["id"])
    admin.delete_endpoint(endpoint["id"])
    with pytest.raises(AdminError) as err:
        admin.endpoint(endpoint["id"])
    assert err.value.status == 404
    assert [t for t, _ in bot.events(f"endpoint-{endpoint['id']}")] == [
        "EndpointCreated",
        "EndpointUpdated",
        "EndpointSecretRotated",
        "EndpointDisabled",
        "EndpointEnabled",
        "EndpointDeleted",
    ]
    for secret in (old_secret, new_secret):
        assert bot.sql("SELECT 1 FROM events WHERE data::text LIKE $1", f"%{secret[6:]}%") == []
        assert secret[6:] not in bot.stack.log_file("webhook_relay").read_text()


def test_the_cli_manages_endpoints(bot: Running, crm: FakeCRM) -> None:
    env = {
        **os.environ,
        "ENV_FILE": str(bot.run_dir / "absent.env"),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOK_RELAY_PORT": str(bot.stack.settings.port_of("webhook_relay")),
    }

    def cli(*args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "ops", "endpoints", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(out.stdout)

    created = cli("create", crm.endpoint_url, "--events", "message.received,message.status")
    assert created["event_types"] == ["message.received", "message.status"]
    assert created["business_id"] == "default"  # unscoped: the default business's
    assert any(e["id"] == created["id"] for e in cli("list"))
    # Scoped to a business, the CLI creates for it and sees nothing of another's.
    theirs = cli("--business", "biz_cli", "create", crm.endpoint_url)
    assert theirs["business_id"] == "biz_cli"
    assert [e["id"] for e in cli("--business", "biz_cli", "list")] == [theirs["id"]]
    assert cli("--business", "default", "get", created["id"])["id"] == created["id"]
    assert cli("delete", theirs["id"]) == {"deleted": theirs["id"]}  # the platform: every one
    assert cli("disable", created["id"], "--reason", "cli test")["enabled"] is False
    assert cli("enable", created["id"])["enabled"] is True
    assert cli("dead-letters", created["id"]) == []
    assert cli("delete", created["id"]) == {"deleted": created["id"]}
    failed = subprocess.run(
        [sys.executable, "-m", "ops", "endpoints", "get", created["id"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert failed.returncode == 1 and "404" in failed.stderr
