"""Delivery behaviour with the relay in-process: isolation between endpoints, order per
conversation, throttling, idempotent fan-out, and the SSRF check at delivery time."""

from __future__ import annotations

import json
import uuid

from services.webhook_relay import domain
from services.webhook_relay.signing import generate_secret
from services.webhook_relay.ssrf import UrlPolicy
from tests.integration.webhook_relay.conftest import running_relay, until
from tests.support.crm_fakes import FakeCRM
from tests.support.fakes import Fault
from tests.unit.test_webhook_relay import FakeDNS


def cid() -> str:
    return f"100.{uuid.uuid4().int % 10**12}"


def sequences(crm: FakeCRM, conversation: str) -> list[int]:
    return [e["data"]["sequence"] for e in crm.events(conversation)]


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
    relay_database_url: str, crm: FakeCRM, crm2: FakeCRM
) -> None:
    slow, healthy = crm, crm2
    # Hangs far beyond the test: not one of its deliveries ends while the test runs.
    slow.fail_always(Fault(status=None, delay=120))
    async with running_relay(relay_database_url, http_timeout=60, max_in_flight=2) as r:
        await r.register(slow)
        await r.register(healthy)
        conversations = [cid() for _ in range(6)]
        for c in conversations:
            await r.conversation(c, 3)
        await until(
            lambda: all(sequences(healthy, c) == [0, 1, 2] for c in conversations),
            message="the healthy CRM has every event, in order",
        )
        # Meanwhile the slow one has only its own two slots in use, and none has ended.
        assert 1 <= len(slow.webhooks()) <= 2
        slow_id = next(e for e in await r.relay.list_endpoints() if e.url == slow.endpoint_url)
        assert await r.relay.counts(slow_id.endpoint_id) == {"pending": 18}


async def test_order_per_conversation_holds_while_one_conversation_retries(
    relay_database_url: str, crm: FakeCRM
) -> None:
    blocked, free = cid(), cid()

    def first_of_blocked(rec: object) -> bool:
        body = json.loads(rec.body)  # type: ignore[attr-defined]
        return body["data"]["conversation_id"] == blocked and body["data"]["sequence"] == 0

    crm.inject(*(Fault(status=500, match=first_of_blocked) for _ in range(2)))
    async with running_relay(relay_database_url, schedule="300ms,300ms,300ms") as r:
        await r.register(crm)
        await r.conversation(blocked, 4)
        await r.conversation(free, 4)
        await until(lambda: sequences(crm, blocked) == [0, 1, 2, 3], message="all delivered")
        assert sequences(crm, free) == [0, 1, 2, 3]
        # The retried first event went before the rest of its conversation; the other
        # conversation did not wait for it.
        first_ok = next(
            i for i, rec in enumerate(crm.webhooks()) if first_of_blocked(rec) and not rec.fault
        )
        free_done = max(
            i
            for i, rec in enumerate(crm.webhooks())
            if json.loads(rec.body)["data"]["conversation_id"] == free
        )
        assert free_done < first_ok
        ids = [r.headers["webhook-id"] for r in crm.webhooks() if first_of_blocked(r)]
        assert len(ids) == 3 and len(set(ids)) == 1  # two failures and the success: one id


async def test_429_with_retry_after_pauses_only_that_endpoint(
    relay_database_url: str, crm: FakeCRM, crm2: FakeCRM
) -> None:
    throttled, other = crm, crm2
    throttled.inject(Fault(status=429, headers={"Retry-After": "4"}))
    async with running_relay(relay_database_url, max_in_flight=1) as r:
        endpoint_id = await r.register(throttled)
        await r.register(other)
        c = cid()
        await r.conversation(c, 3)
        await until(lambda: sequences(other, c) == [0, 1, 2], message="the other CRM is served")
        await until(lambda: sequences(throttled, c) == [0, 1, 2], message="throttled CRM resumes")
        first, second = throttled.webhooks()[:2]
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert second.received_at - first.received_at >= 3.9  # Retry-After was honoured
        # The other endpoint was served during the pause, not after it.
        assert max(r.received_at for r in other.webhooks()) < second.received_at
        [delivery] = [
            d
            for d in await r.relay.list_deliveries(endpoint_id, None, 10)
            if d.delivery_id == first.headers["webhook-id"]
        ]
        assert (delivery.state, delivery.attempts, delivery.failures) == ("succeeded", 2, 0)


async def test_reading_a_batch_again_enqueues_nothing_twice(
    relay_database_url: str, crm: FakeCRM
) -> None:
    async with running_relay(relay_database_url) as r:
        endpoint_id = await r.register(crm)
        c = cid()
        await r.conversation(c, 3)
        await until(lambda: sequences(crm, c) == [0, 1, 2])
        # As after a crash between reading and committing: the subscription reads from an
        # older checkpoint again. Same deterministic ids: nothing new is queued or sent.
        reached = await r.relay.checkpoint()
        await r.relay.pool.execute(
            "UPDATE subscription_checkpoints SET transaction_id = 0 WHERE name = 'webhook-relay'"
        )
        assert await r.relay.checkpoint() < reached

        async def caught_up() -> bool:
            return await r.relay.checkpoint() >= reached

        await until(caught_up, message="the subscription read everything again")
        # A later event of the same conversation: deliveries go out in order per conversation
        # and endpoint, so once it has arrived, anything queued again for the events before
        # it would have been sent before it.
        await r.append(
            f"conversation-{c}",
            "BotReplied",
            {"seq": 3, "text": "r3", "in_reply_to": "", "command_id": f"{c}-3"},
        )
        await until(lambda: 3 in sequences(crm, c), message="the later event delivered")
        assert sequences(crm, c) == [0, 1, 2, 3]
        assert len(crm.webhooks()) == 4
        later = crm.webhooks()[-1].headers["webhook-id"]

        async def later_recorded() -> bool:
            rows = await r.relay.list_deliveries(endpoint_id, None, 10)
            return any(d.delivery_id == later and d.state == "succeeded" for d in rows)

        await until(later_recorded, message="the relay recorded the later delivery")
        assert await r.relay.counts(endpoint_id) == {"succeeded": 4}


async def test_a_name_rebound_to_loopback_is_refused_at_delivery_time(
    relay_database_url: str, crm: FakeCRM
) -> None:
    """Registered while the name pointed elsewhere; now it resolves to an internal address.
    The relay must refuse before connecting: the CRM (which really listens there) gets
    nothing. The same setup with loopback allowed does reach it, so the name really leads
    there."""
    port = crm.endpoint_url.split(":")[2].split("/")[0]
    url = f"http://crm.example.com:{port}{crm.path}"
    dns = FakeDNS({"crm.example.com": ["127.0.0.1"]})
    for policy, reaches in ((UrlPolicy(allow_http=True), False), (None, True)):
        kwargs = {"policy": policy} if policy is not None else {}
        async with running_relay(relay_database_url, dns=dns, schedule="5s", **kwargs) as r:
            endpoint, events = domain.create(
                domain.new_endpoint_id(), url, "", (), generate_secret(), r.deps.now()
            )
            saved = await r.relay.save_endpoint(endpoint, events, -1)
            await r.dispatcher.sync_endpoint(saved)
            c = cid()
            await r.conversation(c, 1)

            async def attempted(endpoint_id: str = saved.endpoint_id) -> bool:
                rows = await r.relay.list_deliveries(endpoint_id, None, 5)
                return bool(rows) and rows[0].attempts >= 1

            await until(attempted, message="one attempt made")
            [row] = await r.relay.list_deliveries(saved.endpoint_id, None, 5)
            if reaches:
                assert row.state == "succeeded" and sequences(crm, c) == [0]
            else:
                assert row.state == "pending" and row.last_status is None
                assert "refused" in (row.last_error or "")
                assert crm.webhooks() == []
        assert "crm.example.com" in dns.asked
