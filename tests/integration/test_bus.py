"""The consumer's rule against a real RabbitMQ (a vhost of its own): a failure is either an
outage (the message waits in its lane, uncounted, and a stop request ends the wait) or a
handler failure (counted, retried in its lane after RETRY_DELAY_MS so that the key's later
messages wait behind it, dead-lettered with its error after MAX_ATTEMPTS, the dead-letter
hook told). Never an uncounted retry of a message's own
problem: a statement that runs out of time is the message's problem."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest_asyncio

from shared.broker.bus import Bus, Consumer, Context, Publish, Service
from shared.broker.topology import DEAD_LETTERS
from shared.config import Settings
from shared.crypto.secrets import new_master_key
from shared.crypto.transit import is_sealed
from shared.errors import RetryLater
from shared.eventstore.postgres import StatementTimeout
from shared.schemas import WebhookDelivery
from tests.support.infra import scratch_vhost


@dataclass
class Probe:
    """The handler under test: behaves as each delivery's body says."""

    calls: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, list[int]] = field(default_factory=dict)
    given_up: list[tuple[str, str]] = field(default_factory=list)
    handled: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    outage_over: asyncio.Event = field(default_factory=asyncio.Event)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def until_called(self, delivery_id: str, times: int) -> None:
        while self.calls.get(delivery_id, 0) < times:
            self.called.clear()
            await asyncio.wait_for(self.called.wait(), 10)

    async def handle(self, msg: WebhookDelivery, ctx: Context) -> list[Publish]:
        self.calls[msg.delivery_id] = self.calls.get(msg.delivery_id, 0) + 1
        self.called.set()
        self.attempts.setdefault(msg.delivery_id, []).append(ctx.attempt)
        if msg.body == "fail" or msg.body.startswith("fail:"):
            raise RuntimeError("this message is broken")
        if msg.body == "fail-once" and ctx.attempt == 0:
            raise RuntimeError("a hiccup nobody classified as an outage")
        if msg.body == "timeout":
            raise StatementTimeout("a statement ran out of time")
        if msg.body == "outage" and not self.outage_over.is_set():
            raise RetryLater("database unavailable", 0.05)
        await self.handled.put(msg.delivery_id)
        return []

    async def dead_letter(self, msg: WebhookDelivery, ctx: Context, error: str) -> list[Publish]:
        self.given_up.append((msg.delivery_id, error))
        return []


@pytest_asyncio.fixture
async def broker(amqp_url: str) -> AsyncIterator[tuple[Settings, Bus]]:
    url, cleanup = scratch_vhost(amqp_url)
    settings = Settings(amqp_url=url, max_attempts=3, retry_delay_ms=100)
    bus = Bus(settings)
    await bus.connect()
    try:
        yield settings, bus
    finally:
        await bus.close()
        cleanup()


async def start(settings: Settings, bus: Bus, probe: Probe) -> Consumer:
    service = Service("dedup")
    service.handles(WebhookDelivery, on_dead_letter=probe.dead_letter)(probe.handle)
    consumer = Consumer(bus, service, settings)
    await consumer.start()
    return consumer


async def send(bus: Bus, body: str, key: str = "100.39") -> str:
    delivery_id = uuid.uuid4().hex
    await bus.publish(
        "dedup", key, WebhookDelivery(delivery_id=delivery_id, received_at=0, body=body)
    )
    return delivery_id


async def dead_letters(settings: Settings, count: int, within: float = 20) -> list[Any]:
    connection = await aio_pika.connect(settings.amqp_url)
    found: list[Any] = []
    async with connection:
        queue = await (await connection.channel()).get_queue(DEAD_LETTERS)
        deadline = time.monotonic() + within
        while len(found) < count and time.monotonic() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.1)
            else:
                found.append(message)
    return found


async def test_a_broken_message_is_counted_retried_then_dead_lettered_with_its_error(
    broker: tuple[Settings, Bus],
) -> None:
    settings, bus = broker
    probe = Probe()
    consumer = await start(settings, bus, probe)
    try:
        broken, slow = await send(bus, "fail"), await send(bus, "timeout")
        letters = await dead_letters(settings, 2)
        assert len(letters) == 2
        # Every attempt was made and counted: 0, 1, 2, then the dead letters.
        assert probe.attempts[broken] == [0, 1, 2] and probe.attempts[slow] == [0, 1, 2]
        errors = {m.message_id: dict(m.headers) for m in letters}
        assert {h["x-attempts"] for h in errors.values()} == {3}
        assert sorted(h["x-stage"] for h in errors.values()) == ["dedup", "dedup"]
        texts = sorted(str(h["x-error"]) for h in errors.values())
        assert "RuntimeError: this message is broken" in texts[0]
        assert "StatementTimeout" in texts[1]
        assert sorted(d for d, _ in probe.given_up) == sorted([broken, slow])
        # A fence in the same lane: a later message of the same key is handled.
        fence = await send(bus, "ok")
        assert await asyncio.wait_for(probe.handled.get(), 10) == fence
    finally:
        await consumer.stop(grace=2)


async def test_a_failed_attempt_is_retried_in_its_lane_and_the_keys_next_message_waits(
    broker: tuple[Settings, Bus],
) -> None:
    """Retried off its lane, the key's next message would be handled first: at dedup, a
    customer's messages recorded (and answered) out of order."""
    settings, bus = broker
    probe = Probe()
    consumer = await start(settings, bus, probe)
    try:
        hiccup = await send(bus, "fail-once")
        behind = await send(bus, "ok")  # same key
        other = await send(bus, "ok", key="100.77")  # another key is not held up
        handled = [await asyncio.wait_for(probe.handled.get(), 15) for _ in range(3)]
        assert handled.index(hiccup) < handled.index(behind), handled
        assert set(handled) == {hiccup, behind, other}
        assert probe.attempts[hiccup] == [0, 1]  # counted
        assert probe.given_up == []
    finally:
        await consumer.stop(grace=2)


async def test_an_outage_waits_uncounted_in_its_lane_and_the_message_goes_through_after(
    broker: tuple[Settings, Bus],
) -> None:
    settings, bus = broker
    probe = Probe()
    consumer = await start(settings, bus, probe)
    try:
        waiting = await send(bus, "outage")
        behind = await send(bus, "ok")  # same key: must wait behind it, in order
        await probe.until_called(waiting, 3)
        assert behind not in probe.calls
        probe.outage_over.set()
        assert await asyncio.wait_for(probe.handled.get(), 15) == waiting
        assert await asyncio.wait_for(probe.handled.get(), 15) == behind
        assert set(probe.attempts[waiting]) == {0}  # never counted as an attempt
        assert probe.given_up == []
    finally:
        await consumer.stop(grace=2)


async def test_a_stop_request_ends_an_outage_wait_and_the_message_is_redelivered(
    broker: tuple[Settings, Bus],
) -> None:
    settings, bus = broker
    probe = Probe()
    consumer = await start(settings, bus, probe)
    waiting = await send(bus, "outage")
    await probe.until_called(waiting, 2)
    started = time.monotonic()
    await consumer.stop(grace=30)
    assert time.monotonic() - started < 5, "the stop waited for the outage"
    # Left unacked: the next consumer gets it once the outage is over.
    probe.outage_over.set()
    again = await start(settings, bus, probe)
    try:
        assert await asyncio.wait_for(probe.handled.get(), 15) == waiting
    finally:
        await again.stop(grace=2)


async def test_a_routing_key_over_amqp_s_limit_is_still_delivered(
    broker: tuple[Settings, Bus],
) -> None:
    settings, bus = broker
    probe = Probe()
    consumer = await start(settings, bus, probe)
    try:
        sent = await send(bus, "ok", key="100." + "3" * 400)
        assert await asyncio.wait_for(probe.handled.get(), 10) == sent
    finally:
        await consumer.stop(grace=2)


async def test_with_a_master_key_bodies_are_sealed_on_the_broker_and_opened_by_the_consumer(
    amqp_url: str,
) -> None:
    """What RabbitMQ keeps on its disk (a queue, the dead letters) is sealed; the consumer
    gets the message as it was published."""
    url, cleanup = scratch_vhost(amqp_url)
    settings = Settings(
        amqp_url=url, max_attempts=1, retry_delay_ms=10, master_key=new_master_key()
    )
    bus = Bus(settings)
    await bus.connect()
    try:
        secret = f"my address is {uuid.uuid4().hex}"
        await send(bus, "fail:" + secret)  # fails: kept in the dead letters, sealed
        probe = Probe()
        consumer = await start(settings, bus, probe)
        try:
            [letter] = await dead_letters(settings, 1)
            assert secret.encode() not in letter.body and is_sealed(letter.body)
            assert [e for d, e in probe.given_up] and probe.calls  # it was opened and handled
            fence = await send(bus, "ok")
            assert await asyncio.wait_for(probe.handled.get(), 10) == fence
        finally:
            await consumer.stop(grace=2)
    finally:
        await bus.close()
        cleanup()
